#include "frame.h"

#include <cinttypes>
#include <cstdio>

namespace connleak {
namespace {

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

std::string format_native(const NativeFrame& f, bool with_source)
{
    if (f.module.empty())
        return hex(f.address);
    if (f.function.empty())
        return f.module + "+" + hex(f.file_offset);
    std::string s = f.function + "+" + hex(f.function_offset) + " (" + f.module + ")";
    if (with_source && !f.source.empty())
        s += " " + f.source;
    return s;
}

std::string format_interpreter(const InterpreterFrame& f)
{
    return f.qualname + " (" + f.path + ":" + std::to_string(f.line) + ")";
}

}  // namespace

std::string format_frame(const Frame& frame, bool with_source)
{
    if (const auto* n = std::get_if<NativeFrame>(&frame))
        return format_native(*n, with_source);
    return format_interpreter(std::get<InterpreterFrame>(frame));
}

}  // namespace connleak
