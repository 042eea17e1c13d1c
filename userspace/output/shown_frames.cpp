#include "shown_frames.h"

namespace connleak {

bool python_frame(std::string_view frame)
{
    if (frame.empty() || frame.back() != ')')
        return false;
    const size_t open = frame.find(" (");  // a qualified name has no " ("
    if (open == std::string_view::npos || open == 0 || open + 3 > frame.size())
        return false;
    return frame.substr(0, open).find("+0x") == std::string_view::npos;
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
