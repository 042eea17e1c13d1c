// Python code objects as the kernel described them (python_code_event):
// their names, and the source line of an instruction from the line table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "connleak.h"

namespace connleak {

// The line of instruction `instr` (in code units) from a CPython 3.11+
// location table (Objects/locations.md), starting at `firstlineno`; -1 when
// the table has no line for it (or stops before it).
int python_line(const uint8_t* table, size_t len, int firstlineno, uint32_t instr);

struct PythonCode {
    std::string qualname, filename;
    int firstlineno = 0;
    std::vector<uint8_t> linetable;
};

// "qualname (file.py:LINE)", or "qualname (file.py)" when no line is known.
std::string python_frame_name(const PythonCode& code, uint32_t instr);

// Code objects per (process, layout generation, address), from the events.
class PythonCodes {
public:
    void add(const python_code_event& e);
    // The frame's name, or "" when its code object was never described.
    std::string frame_name(uint32_t pid, uint32_t generation, uint64_t code, uint32_t instr) const;
    void forget(uint32_t pid);
    size_t size() const { return codes_.size(); }

private:
    std::map<std::tuple<uint32_t, uint32_t, uint64_t>, PythonCode> codes_;
};

}  // namespace connleak
