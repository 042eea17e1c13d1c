#include "shown_frames.h"

#include <algorithm>
#include <cctype>

namespace connleak {

bool python_frame(std::string_view frame)
{
    if (frame.size() < 6 || frame.back() != ')')
        return false;
    const size_t open = frame.rfind(" (");
    if (open == std::string_view::npos)
        return false;
    std::string_view where = frame.substr(open + 2, frame.size() - open - 3);
    // Drop ":42", then it must name a .py file.
    if (size_t colon = where.rfind(':'); colon != std::string_view::npos) {
        const std::string_view line = where.substr(colon + 1);
        if (line.empty() || !std::all_of(line.begin(), line.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
            return false;
        where = where.substr(0, colon);
    }
    return where.size() > 3 && where.substr(where.size() - 3) == ".py";
}

std::vector<std::string_view> shown_frames(const std::vector<std::string>& frames)
{
    std::vector<std::string_view> python;
    for (const std::string& f : frames)
        if (python_frame(f))
            python.push_back(f);
    if (!python.empty())
        return python;
    return {frames.begin(), frames.end()};
}

}  // namespace connleak
