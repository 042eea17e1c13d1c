// Sockets in the JSON snapshot (see socket_json.h).
#include "socket_json.h"

#include <string>

namespace connleak {

nlohmann::ordered_json socket_json(const ProcessSocketReport& r)
{
    nlohmann::ordered_json pre = nlohmann::ordered_json::object(), untracked = nlohmann::ordered_json::object();
    for (const auto& [peer, n] : r.pre_attach_peers)
        pre[peer] = n;
    for (const auto& [peer, n] : r.untracked_peers)
        untracked[peer] = n;
    return {{"paired", r.paired},
            {"pre_attach", r.pre_attach},
            {"untracked", r.untracked},
            {"connecting", r.connecting},
            {"handles_without_socket", r.handles_without_socket},
            {"closed_at_exit", r.closed_at_exit},
            {"dropped", r.dropped},
            {"pre_attach_peers", std::move(pre)},
            {"untracked_peers", std::move(untracked)}};
}

nlohmann::ordered_json with_sockets(const nlohmann::ordered_json& process, const ProcessSocketReport& r)
{
    using json = nlohmann::ordered_json;
    if (!r.tracked || !process.is_object())
        return process;
    json out = json::object();
    auto add_counts = [&] {
        out["db_sockets"] = r.db_sockets;
        out["tracking_discrepancy"] = r.tracking_discrepancy;
        out["sockets"] = socket_json(r);
    };
    for (auto it = process.begin(); it != process.end(); ++it) {
        if (it.key() == "top_connection_users")
            add_counts();
        out[it.key()] = it.value();
    }
    if (!out.contains("db_sockets"))
        add_counts();
    return out;
}

}  // namespace connleak
