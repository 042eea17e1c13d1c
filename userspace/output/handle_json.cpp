#include "handle_json.h"

#include <cmath>

#include "safe_text.h"

namespace connleak {

using json = nlohmann::ordered_json;

void add_handle_keys(json& conn, const ConnReport& c)
{
    const bool known = c.state_known && c.state != ConnState::unknown;
    conn["state"] = known ? json(conn_state_name(c.state)) : json(nullptr);
    conn["backend_pid"] = known && c.backend_pid ? json(c.backend_pid) : json(nullptr);
    conn["database"] = known ? json(utf8_text(c.database)) : json(nullptr);
    conn["user"] = known ? json(utf8_text(c.user)) : json(nullptr);
    conn["pooled"] = c.pooled;
}

void add_state_counts(json& entry, const std::map<std::string, uint64_t>& states, uint64_t pool_slots_lost)
{
    json counts = json::object();
    for (const auto& [state, n] : states)
        counts[state] = n;
    entry["states"] = std::move(counts);
    entry["pool_slots_lost"] = pool_slots_lost;
}

void add_notice_pool_keys(json& notice, const Notice& n)
{
    notice["pooled"] = n.pooled;
    if (n.pooled && n.kind == "leak")
        notice["in_transaction_ms"] = std::round(n.in_transaction_ms * 10.0) / 10.0;
}

}  // namespace connleak
