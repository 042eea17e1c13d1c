// One frame of an acquiring stack as people read it, whatever kind of code
// it lies in. Native frames (machine code in an ELF file) today; a second
// kind (interpreter frames, e.g. Python's `qualname (path/file.py:42)`)
// joins as another alternative of Frame without touching the native one.
// Pure: no libdw here, the symbolizer fills NativeFrame.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

namespace connleak {

struct NativeFrame {
    uint64_t address = 0;      // in the process; all there is when no file maps it
    std::string module;        // short file name ("libpq.so.5"), "" when no file maps it
    std::string build_id;      // hex, "" if none or unknown
    uint64_t file_offset = 0;  // of the code byte in the module's file
    std::string function;      // demangled, "" when no symbol covers it
    uint64_t function_offset = 0;
    std::string source;  // "file.c:42", "" without line info
};

struct InterpreterFrame {
    std::string qualname;  // "Handler.get"
    std::string path;      // as the interpreter knows it ("app/routes.py")
    uint32_t line = 0;
};

using Frame = std::variant<NativeFrame, InterpreterFrame>;

// The one spelling of a frame in reports: "func+0x3c (module) file.c:42",
// "module+0x1234" (no symbol), "0x7f..." (no file); "qualname (path:42)".
// Without `with_source`, the native frame's " file.c:42" is left out (what
// --site-skip patterns and caller sites see).
std::string format_frame(const Frame& frame, bool with_source = true);

}  // namespace connleak
