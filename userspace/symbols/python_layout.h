// Where a CPython interpreter keeps what the kernel reads to walk a
// thread's Python frames: a table of offsets per version (data, not code),
// and finding an interpreter in a process (python3.X or libpython3.X
// mapped, its version read from Py_Version, its TSS key from _PyRuntime),
// checked against the process before use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "connleak.h"
#include "result.h"

namespace connleak {

// One interpreter version's offsets. Only versions listed are followed.
struct PythonVersionLayout {
    uint32_t version = 0;          // 0x030b: 3.11
    bool tested = false;           // run against a real interpreter in tests
    uint16_t runtime_tss_key = 0;  // _PyRuntime.gilstate.autoTSSkey (Py_tss_t)
    uint16_t runtime_interpreters_head = 0;
    uint16_t interp_threads_head = 0;  // PyInterpreterState.threads.head
    uint16_t tstate_next = 0, tstate_native_thread_id = 0;
    python_layout kernel{};  // tsd_offset and generation filled per process
};

// The table's entry for a Py_Version (major and minor only), or null.
const PythonVersionLayout* python_layout_for(uint32_t py_version);
const std::vector<PythonVersionLayout>& python_layouts();

// "3.11.2" from a Py_Version / PY_VERSION_HEX.
std::string python_version_string(uint32_t py_version);

// A process's interpreter, ready for the kernel.
struct PythonProcess {
    uint32_t py_version = 0;
    python_layout layout{};
};

enum class PythonProbe {
    not_python,   // no python3.X / libpython3.X mapped
    not_ready,    // Python, but its runtime is not initialised yet: look again later
    unsupported,  // Python, but connleak cannot follow it (message says why)
    ready,
};

struct PythonFound {
    PythonProbe state = PythonProbe::not_python;
    PythonProcess process;
    std::string message;  // for unsupported
};

// Looks at process `pid`: is it Python, which version, where its thread
// states are. `tsd_key0` is the offset from a thread's fs base to the data
// of pthread key 0 (own_tsd_key0_offset()).
PythonFound probe_python(uint32_t pid, uint64_t tsd_key0, uint32_t generation);

// Measured in connleak's own process (same glibc as the target, checked by
// probe_python): where glibc keeps pthread key 0's value, from the thread
// pointer. Keys below 32 lie in struct pthread itself.
Result<uint64_t> own_tsd_key0_offset();

}  // namespace connleak
