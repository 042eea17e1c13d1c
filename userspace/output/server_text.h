// Server truth (--server) in the text report and the live view: the
// server's state beside each connection.
#pragma once

#include <string>

#include "model.h"

namespace connleak {

// "idle in transaction 31.2s" (the state and how long it has held), "" when
// the connection was not joined with a server, "?" when the role may not
// see its state.
std::string server_cell(const ConnReport& c);

// An open transaction nobody is using: shown red.
bool server_alarm(const ConnReport& c);

// The CONNECTION cell: the handle's address, or "pre-attach".
std::string connection_cell(const ConnReport& c);

// The THREAD cell: the acquiring thread, or "-" before the attach.
std::string thread_cell(const ConnReport& c);

}  // namespace connleak
