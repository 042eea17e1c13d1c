// Server truth (--server) in the JSON snapshot: "pre_attach", "backend_pid"
// and "server" on each entry of connections[], and the top-level "servers".
#pragma once

#include <nlohmann/json.hpp>

#include "model.h"

namespace connleak {

// A connection's "server" object.
nlohmann::ordered_json server_conn_json(const ServerConn& s);

// A process's JSON entry (its connections[] in the order of p.connections)
// with the server keys added; pre-attach entries get "conn": null and their
// socket's peer. Unchanged when no --server was given.
nlohmann::ordered_json with_server(nlohmann::ordered_json process, const ProcessReport& p, bool server_enabled);

// The top-level "servers": [{"server", "ok", "sessions"}].
nlohmann::ordered_json servers_json(const std::vector<ServerSummary>& servers);

}  // namespace connleak
