#include "server_json.h"

#include "safe_text.h"

namespace connleak {

using json = nlohmann::ordered_json;

namespace {

json text_or_null(const std::optional<std::string>& s)
{
    return s ? json(utf8_text(*s)) : json(nullptr);
}

}  // namespace

json server_conn_json(const ServerConn& s)
{
    return {{"state", text_or_null(s.state)},           {"backend_start", text_or_null(s.backend_start)},
            {"xact_start", text_or_null(s.xact_start)}, {"state_change", text_or_null(s.state_change)},
            {"wait_event", text_or_null(s.wait_event)}, {"query", text_or_null(s.query)}};
}

json with_server(json process, const ProcessReport& p, bool server_enabled)
{
    if (!server_enabled || !process.contains("connections") || !process["connections"].is_array())
        return process;
    json& conns = process["connections"];
    for (size_t i = 0; i < conns.size() && i < p.connections.size(); i++) {
        const ConnReport& c = p.connections[i];
        json& e = conns[i];
        if (c.pre_attach) {
            e["conn"] = nullptr;
            e["tid"] = nullptr;
            e["site"] = nullptr;
            if (c.server) {
                e["peer"] = c.server->peer.empty() ? json(nullptr) : json(utf8_text(c.server->peer));
                e["socket"] = c.server->socket;
            }
        }
        e["pre_attach"] = c.pre_attach;
        if (c.server)
            e["backend_pid"] = c.server->backend_pid;
        e["server"] = c.server ? server_conn_json(*c.server) : json(nullptr);
    }
    return process;
}

json servers_json(const std::vector<ServerSummary>& servers)
{
    json out = json::array();
    for (const ServerSummary& s : servers)
        out.push_back({{"server", utf8_text(s.server)}, {"ok", s.ok}, {"sessions", s.sessions}});
    return out;
}

}  // namespace connleak
