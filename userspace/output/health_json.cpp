#include "health_json.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "snapshot_fields.h"

namespace connleak {
namespace {

using json = nlohmann::ordered_json;

struct Route {
    std::string site;
    uint64_t acquired = 0, released = 0, active = 0, leaks = 0;
    double held_ms = 0;  // avg_ms x released, summed: the merged mean is exact
};

void add_sites(const json& sites, std::map<std::string, Route>& routes)
{
    for (const json& s : sites) {
        const std::string name = json_text(s, "site");
        Route& r = routes[name];
        r.site = name;
        r.acquired += json_count(s, "acquired");
        r.released += json_count(s, "released");
        r.active += json_count(s, "active");
        r.leaks += json_count(s, "leaks");
        r.held_ms += json_number(s, "avg_ms") * static_cast<double>(json_count(s, "released"));
    }
}

}  // namespace

json health_detailed_json(const json& snapshot, size_t top)
{
    std::map<std::string, Route> routes;
    for (const json& p : json_list(snapshot, "processes"))
        add_sites(json_list(p, "top_connection_users"), routes);
    for (const json& g : json_list(snapshot, "exited_folded"))
        add_sites(json_list(g, "sites"), routes);
    std::vector<Route> rows;
    for (auto& [name, r] : routes)
        rows.push_back(r);
    std::sort(rows.begin(), rows.end(), [](const Route& a, const Route& b) {
        return std::make_tuple(b.leaks, b.active, b.acquired, a.site) <
               std::make_tuple(a.leaks, a.active, a.acquired, b.site);
    });
    if (rows.size() > top)
        rows.resize(top);
    json users = json::array();
    for (const Route& r : rows) {
        const double avg = r.released ? r.held_ms / static_cast<double>(r.released) : 0.0;
        users.push_back({{"route", r.site},
                         {"acquired", r.acquired},
                         {"released", r.released},
                         {"active", r.active},
                         {"leaks", r.leaks},
                         {"avg_ms", std::round(avg * 10.0) / 10.0}});
    }

    const json& stats = json_list(snapshot, "tracking_stats");
    const uint64_t active = json_count(stats, "total_active");
    const uint64_t leaks = json_count(stats, "total_leaks");
    // checked_out is the pool's view in the seed; here the database
    // sockets the processes hold. Without socket tracking (--no-sockets)
    // there is no second view: the handles stand for it, discrepancy 0.
    const bool sockets = stats.contains("total_db_sockets");
    const uint64_t checked_out = sockets ? json_count(stats, "total_db_sockets") : active;
    const int64_t discrepancy = sockets ? json_int(stats, "tracking_discrepancy") : 0;
    json db = {{"checked_out", checked_out},
               {"tracking_stats",
                {{"total_acquired", json_count(stats, "total_acquired")},
                 {"total_released", json_count(stats, "total_released")},
                 {"total_active", active},
                 {"total_leaks", leaks},
                 {"leak_ratio", json_number(stats, "leak_ratio")}}},
               {"tracking_discrepancy", discrepancy},
               {"top_connection_users", std::move(users)}};
    return {{"status", leaks > 0 || discrepancy != 0 ? "degraded" : "healthy"},
            {"timestamp", json_text(snapshot, "time")},
            {"checks", {{"database_pool", std::move(db)}}}};
}

}  // namespace connleak
