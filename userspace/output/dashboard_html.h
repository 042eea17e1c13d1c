// GET /: the dashboard page (DESIGN.md "HTTP"), one self-contained HTML
// document (no scripts, styles inline, nothing fetched) that reloads itself.
// Rendered on the server from the version-1 snapshot JSON: the seed's
// metrics, the per-site table (leak rows red, healthy rows green), the live
// connections with whatever each one carries (state, last user, ... once the
// snapshot has those keys) and the latest leak notices.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace connleak {

struct DashboardOptions {
    int refresh_s = 2;             // the page reloads itself this often
    size_t max_connections = 500;  // live connection rows shown (the rest: /snapshot.json)
    size_t max_notices = 50;       // latest leak notices shown
};

// &, <, >, " and ' as entities.
std::string html_escape(std::string_view text);

std::string dashboard_html(const nlohmann::ordered_json& snapshot, const DashboardOptions& opts);

}  // namespace connleak
