// Sockets in the JSON snapshot: the "sockets" object and the socket keys
// of a process entry.
#pragma once

#include <nlohmann/json.hpp>

#include "socket_model.h"

namespace connleak {

// The per-process "sockets" object of the JSON snapshot.
nlohmann::ordered_json socket_json(const ProcessSocketReport& r);

// A process's JSON entry with the socket keys added (when r.tracked):
// db_sockets, tracking_discrepancy and sockets before top_connection_users.
// (Each connection's peer, local and socket come from its ConnReport.)
nlohmann::ordered_json with_sockets(const nlohmann::ordered_json& process, const ProcessSocketReport& r);

}  // namespace connleak
