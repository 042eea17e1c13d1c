// Sockets in the text report.
#pragma once

#include <string>

#include "socket_model.h"

namespace connleak {

// The text report's lines about a process's sockets ("" when untracked).
std::string socket_text(const ProcessSocketReport& r, bool exited);

}  // namespace connleak
