// printf into a std::string, for the fixed-width columns of the reports.
#pragma once

#include <cstdio>
#include <string>

namespace connleak {

template <typename... Args>
std::string fmt(const char* format, Args... args)
{
    int n = std::snprintf(nullptr, 0, format, args...);
    std::string out(static_cast<size_t>(n), '\0');
    std::snprintf(out.data(), out.size() + 1, format, args...);
    return out;
}

}  // namespace connleak
