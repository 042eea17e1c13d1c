// Which frames of a stack the text outputs show. A stack with Python frames
// shows those only: the interpreter's and the driver's C frames between
// them (_PyObject_MakeTpCall, _psycopg...so+0x16998) say nothing of the
// application, and ten of them hid the route. JSON keeps every frame.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace connleak {

// "qualname (path/file.py:42)" or, line unknown, "qualname (path/file.py)".
bool python_frame(std::string_view frame);

std::vector<std::string_view> shown_frames(const std::vector<std::string>& frames);

}  // namespace connleak
