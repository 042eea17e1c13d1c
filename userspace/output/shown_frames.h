// Which frames of a stack the text outputs show. A stack with Python frames
// shows those only: the interpreter's and the driver's C frames between
// them (_PyObject_MakeTpCall, _psycopg...so+0x16998) say nothing of the
// application, and ten of them hid the route. JSON keeps every frame.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace connleak {

// "qualname (path/file.py:42)", "qualname (path/file.py)" (line unknown),
// "main (/usr/local/bin/report:12)" (a script without .py), "<module>
// (<string>:1)": a name, then its file in brackets at the end. Native
// frames have "+0x" in their name ("func+0x3c (module)", "module+0x1f",
// "func+0x3c (module) file.c:42").
bool python_frame(std::string_view frame);

std::vector<std::string_view> shown_frames(const std::vector<std::string>& frames);

}  // namespace connleak
