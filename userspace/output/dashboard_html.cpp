#include "dashboard_html.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "health_json.h"
#include "snapshot_fields.h"

namespace connleak {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kStyle = R"(
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { display: inline; margin-right: .5em; }
h2 { margin-top: 1.5em; font-size: 1.1em; }
.status { padding: .15em .6em; border-radius: .3em; font-weight: bold; color: #fff; }
.status.healthy { background: #2e7d32; } .status.degraded { background: #c62828; }
.when { color: #666; margin-left: .5em; }
.metrics { display: flex; flex-wrap: wrap; gap: .8em; margin-top: 1em; }
.metric { background: #fff; border: 1px solid #ddd; border-radius: .4em; padding: .6em 1em; min-width: 9em; }
.metric-label { display: block; color: #666; font-size: .85em; }
.metric-value { display: block; font-size: 1.6em; font-weight: bold; }
.metric-note { display: block; color: #888; font-size: .75em; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.leak { background: #ffcdd2; } tr.leak td.site, tr.leak td.user { color: #b71c1c; font-weight: bold; }
tr.healthy { background: #c8e6c9; }
tr.released { background: #e8f5e9; }
.more, .empty { color: #666; }
code { font-size: .9em; }
)";

std::string num(uint64_t v)
{
    return std::to_string(v);
}

std::string fixed1(double v)
{
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
}

std::string metric(const char* id, const char* label, const std::string& value, const char* note)
{
    return std::string("<div class=\"metric\"><span class=\"metric-label\">") + label +
           "</span><span class=\"metric-value\" id=\"" + id + "\">" + html_escape(value) +
           "</span><span class=\"metric-note\">" + note + "</span></div>\n";
}

std::string cell(const std::string& text, const char* cls = nullptr)
{
    return std::string("<td") + (cls ? std::string(" class=\"") + cls + "\"" : "") + ">" + html_escape(text) + "</td>";
}

std::string process_name(const json& p)
{
    return json_text(p, "comm") + " (" + num(json_count(p, "pid")) + (p.value("exited", false) ? ", exited)" : ")");
}

// A value of a connection's key, for a person.
std::string shown(const json& v)
{
    if (v.is_null())
        return "-";
    if (v.is_string())
        return v.get<std::string>();
    if (v.is_boolean())
        return v.get<bool>() ? "yes" : "no";
    if (v.is_number_float())
        return fixed1(v.get<double>());
    if (v.is_object() && v.contains("state"))  // the server's view: its state says most
        return shown(v["state"]);
    return v.dump();
}

struct SiteLine {
    std::string process, site;
    uint64_t active, acquired, released, leaks, at_exit;
    double avg_ms;
};

SiteLine site_line(const std::string& process, const json& s)
{
    return {process,
            json_text(s, "site"),
            json_count(s, "active"),
            json_count(s, "acquired"),
            json_count(s, "released"),
            json_count(s, "leaks"),
            json_count(s, "leaked_at_exit"),
            json_number(s, "avg_ms")};
}

std::string sites_table(const json& snapshot)
{
    std::vector<SiteLine> lines;
    for (const json& p : json_list(snapshot, "processes"))
        for (const json& s : json_list(p, "top_connection_users"))
            lines.push_back(site_line(process_name(p), s));
    for (const json& g : json_list(snapshot, "exited_folded"))
        for (const json& s : json_list(g, "sites"))
            lines.push_back(
                site_line(json_text(g, "comm") + " (" + num(json_count(g, "processes")) + " exited, folded)", s));
    // Leaks on top, where a person looks first.
    std::stable_sort(lines.begin(), lines.end(), [](const SiteLine& a, const SiteLine& b) {
        return std::make_pair(a.leaks + a.at_exit, a.active) > std::make_pair(b.leaks + b.at_exit, b.active);
    });
    std::string out =
        "<table id=\"sites\"><thead><tr><th>Process</th><th>Route/Function</th><th>Active Now</th>"
        "<th>Acquired</th><th>Released</th><th>Leaks</th><th>Leaked at Exit</th><th>Avg Duration (ms)</th>"
        "</tr></thead><tbody>\n";
    for (const SiteLine& l : lines) {
        const bool leak = l.leaks > 0 || l.at_exit > 0;
        out += std::string("<tr class=\"") + (leak ? "leak" : "healthy") + "\">" + cell(l.process) +
               cell(l.site, "site") + cell(num(l.active), "n") + cell(num(l.acquired), "n") +
               cell(num(l.released), "n") + cell(num(l.leaks), "n") + cell(num(l.at_exit), "n") +
               cell(l.released ? fixed1(l.avg_ms) : "-", "n") + "</tr>\n";
    }
    if (lines.empty())
        out += "<tr><td colspan=\"8\" class=\"empty\">no connection acquired yet</td></tr>\n";
    return out + "</tbody></table>\n";
}

// Per process, each last user: the handles it last used, how many of them it
// holds checked out of a pool now, and its leaks (worst first, as the
// snapshot lists them). Absent until the snapshot has `last_users`.
std::string last_users_table(const nlohmann::ordered_json& snapshot)
{
    std::string rows;
    for (const json& p : json_list(snapshot, "processes"))
        for (const json& u : json_list(p, "last_users")) {
            const std::string site = json_text(u, "site");
            const bool leak = json_count(u, "leaks") > 0;
            rows += std::string("<tr class=\"") + (leak ? "leak" : "healthy") + "\">" + cell(process_name(p)) +
                    cell(site.empty() ? "(not known)" : site, "user") + cell(num(json_count(u, "connections")), "n") +
                    cell(num(json_count(u, "pooled")), "n") + cell(num(json_count(u, "checked_out")), "n") +
                    cell(num(json_count(u, "leaks")), "n") + "</tr>\n";
        }
    if (rows.empty())
        return "";
    return "<h2>Last users</h2>\n<table id=\"last_users\"><thead><tr><th>Process</th><th>Last User</th>"
           "<th>Connections</th><th>Pooled</th><th>Checked Out</th><th>Leaks</th></tr></thead><tbody>\n" +
           rows + "</tbody></table>\n";
}

// Keys other than the base ones, shown when some connection has them.
const std::pair<const char*, const char*> kConnExtras[] = {
    {"state", "State"},         {"last_used_site", "Last User"},
    {"idle_ms", "Idle (ms)"},   {"pooled", "Pooled"},
    {"peer", "Peer"},           {"local", "Local"},
    {"socket", "Socket"},       {"backend_pid", "Backend PID"},
    {"database", "Database"},   {"user", "User"},
    {"server", "Server State"}, {"pre_attach", "Before Attach"},
};

std::string connections_table(const json& snapshot, size_t max_rows)
{
    std::vector<const char*> extras;
    for (const auto& [key, title] : kConnExtras) {
        bool any = false;
        for (const json& p : json_list(snapshot, "processes"))
            for (const json& c : json_list(p, "connections"))
                any = any || (c.contains(key) && !c[key].is_null());  // a column only where something is known
        if (any)
            extras.push_back(key);
    }
    std::string out = "<table id=\"connections\"><thead><tr><th>Process</th><th>Connection</th><th>Thread</th>"
                      "<th>Site</th><th>Age (ms)</th>";
    for (const char* key : extras)
        for (const auto& [k, title] : kConnExtras)
            if (k == key)
                out += std::string("<th>") + title + "</th>";
    out += "</tr></thead><tbody>\n";
    size_t rows = 0, total = 0;
    for (const json& p : json_list(snapshot, "processes")) {
        const uint64_t listed = json_list(p, "connections").size();
        total += std::max<uint64_t>(listed, json_count(p, "connections_total"));
        for (const json& c : json_list(p, "connections")) {
            if (rows >= max_rows)
                break;
            rows++;
            const bool leak = c.value("leak", false);
            out += std::string("<tr class=\"") + (leak ? "leak" : "healthy") + "\">" + cell(process_name(p)) +
                   cell(c.contains("conn") ? shown(c["conn"]) : "-") + cell(num(json_count(c, "tid")), "n") +
                   cell(json_text(c, "site"), "site") + cell(fixed1(json_number(c, "age_ms")), "n");
            for (const char* key : extras)
                out += cell(c.contains(key) ? shown(c[key]) : "");
            out += "</tr>\n";
        }
    }
    if (total == 0)
        out += "<tr><td colspan=\"" + std::to_string(5 + extras.size()) +
               "\" class=\"empty\">no live connection</td></tr>\n";
    out += "</tbody></table>\n";
    if (total > rows)
        out += "<p class=\"more\">" + num(total - rows) +
               " more live connections not shown: <a href=\"/snapshot.json\">/snapshot.json</a></p>\n";
    return out;
}

std::string notices_table(const json& snapshot, size_t max_rows)
{
    const json& notices = json_list(snapshot, "notices");
    std::string out = "<table id=\"notices\"><thead><tr><th>Time</th><th>Kind</th><th>Process</th><th>Thread</th>"
                      "<th>Connection</th><th>Held (ms)</th><th>Site</th></tr></thead><tbody>\n";
    size_t shown_rows = 0;
    for (auto it = notices.rbegin(); it != notices.rend() && shown_rows < max_rows; ++it, ++shown_rows) {
        const json& n = *it;
        const std::string kind = json_text(n, "kind");
        const double held = n.contains("age_ms") ? json_number(n, "age_ms") : json_number(n, "held_ms");
        out += std::string("<tr class=\"") + (kind == "leak" ? "leak" : "released") + "\">" +
               cell(json_text(n, "time")) + cell(kind) +
               cell(json_text(n, "comm") + " (" + num(json_count(n, "pid")) + ")") +
               cell(num(json_count(n, "tid")), "n") + cell(json_text(n, "conn")) + cell(fixed1(held), "n") +
               cell(json_text(n, "site"), "site") + "</tr>\n";
    }
    if (notices.empty())
        out += "<tr><td colspan=\"7\" class=\"empty\">no leak notice yet</td></tr>\n";
    return out + "</tbody></table>\n";
}

}  // namespace

std::string html_escape(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\'':
            out += "&#39;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

std::string dashboard_html(const json& snapshot, const DashboardOptions& opts)
{
    const json health = health_detailed_json(snapshot, 0);
    const json& db = health["checks"]["database_pool"];
    const json& stats = json_list(snapshot, "tracking_stats");
    const std::string status = health["status"].get<std::string>();
    const bool sockets = stats.contains("total_db_sockets");
    const int refresh = std::max(1, opts.refresh_s);

    std::string out =
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"refresh\" content=\"" +
        std::to_string(refresh) + "\">\n<title>connleak: " + status + "</title>\n<style>" + kStyle +
        "</style></head>\n<body>\n<header><h1>connleak</h1><span class=\"status " + status + "\" id=\"status\">" +
        status + "</span><span class=\"when\">snapshot " + html_escape(json_text(snapshot, "time")) + ", leak after " +
        html_escape(snapshot.contains("leak_after_s") ? snapshot["leak_after_s"].dump() : "?") + " s, reloads every " +
        std::to_string(refresh) + " s</span></header>\n<section class=\"metrics\">\n";
    out += metric("dbActive", "Active Connections", num(json_count(db, "checked_out")),
                  sockets ? "database sockets held" : "live libpq handles (--no-sockets)");
    out += metric("dbPoolSize", "Pool Sockets (Open)", sockets ? num(json_count(stats, "total_db_sockets")) : "-",
                  "sockets to a database server");
    out += metric("dbTrackingActive", "Tracking Active", num(json_count(stats, "total_active")), "live libpq handles");
    out += metric("dbTrackingDiscrepancy", "Tracking Discrepancy", std::to_string(json_int(db, "tracking_discrepancy")),
                  "sockets minus handles");
    out += metric("totalAcquired", "Acquired", num(json_count(stats, "total_acquired")), "since start");
    out += metric("totalReleased", "Released", num(json_count(stats, "total_released")), "since start");
    out += metric("totalLeaks", "Leaks", num(json_count(stats, "total_leaks")), "live, held past leak-after");
    out += metric("leakRatio", "Leak Ratio", fixed1(json_number(stats, "leak_ratio")) + " %", "leaks / acquired");
    out += metric("totalLeakedAtExit", "Leaked at Exit", num(json_count(stats, "total_leaked_at_exit")),
                  "never finished by exited processes");
    out += "</section>\n<h2>Connection tracking by route/function</h2>\n" + sites_table(snapshot);
    out += last_users_table(snapshot);
    out += "<h2>Live connections</h2>\n" + connections_table(snapshot, opts.max_connections);
    out += "<h2>Leak notices</h2>\n" + notices_table(snapshot, opts.max_notices);
    out += "<p class=\"more\">Also: <a href=\"/health/detailed\">/health/detailed</a>, "
           "<a href=\"/snapshot.json\">/snapshot.json</a>, <a href=\"/metrics\">/metrics</a></p>\n</body></html>\n";
    return out;
}

}  // namespace connleak
