// Names from the target (comm, symbol and file names) are bytes the target
// chose: they must not steer the terminal nor break JSON's UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace connleak {

// Valid UTF-8 kept as is; control characters and bytes that are not valid
// UTF-8 shown as \xNN.
std::string safe_text(std::string_view raw);

// For JSON, which escapes control characters itself: only bytes that are
// not valid UTF-8 shown as \xNN.
std::string utf8_text(std::string_view raw);

}  // namespace connleak
