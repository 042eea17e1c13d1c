#include "prometheus_text.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "snapshot_fields.h"

namespace connleak {
namespace {

using json = nlohmann::ordered_json;

struct SiteRow {
    std::string site;
    uint64_t acquired = 0, released = 0, active = 0, leaks = 0, leaked_at_exit = 0;

    void add(const SiteRow& o)
    {
        acquired += o.acquired;
        released += o.released;
        active += o.active;
        leaks += o.leaks;
        leaked_at_exit += o.leaked_at_exit;
    }
    bool empty() const { return !acquired && !released && !active && !leaks && !leaked_at_exit; }
};

SiteRow site_row(const json& s)
{
    SiteRow r;
    r.site = json_text(s, "site");
    r.acquired = json_count(s, "acquired");
    r.released = json_count(s, "released");
    r.active = json_count(s, "active");
    r.leaks = json_count(s, "leaks");
    r.leaked_at_exit = json_count(s, "leaked_at_exit");
    return r;
}

uint64_t minus(uint64_t whole, uint64_t part)
{
    return whole > part ? whole - part : 0;
}

// The listed sites of a process (or folded group), and what the listed
// ones leave of its totals as one more row.
std::vector<SiteRow> sites_with_rest(const json& sites, const json& totals)
{
    std::vector<SiteRow> rows;
    SiteRow sum;
    for (const json& s : sites) {
        rows.push_back(site_row(s));
        sum.add(rows.back());
    }
    SiteRow rest;
    rest.site = kOtherSites;
    rest.acquired = minus(json_count(totals, "acquired"), sum.acquired);
    rest.released = minus(json_count(totals, "released"), sum.released);
    rest.active = minus(json_count(totals, "active"), sum.active);
    rest.leaks = minus(json_count(totals, "leaks"), sum.leaks);
    rest.leaked_at_exit = minus(json_count(totals, "leaked_at_exit"), sum.leaked_at_exit);
    if (!rest.empty())
        rows.push_back(rest);
    return rows;
}

// A series: its labels (already escaped, in order) and value.
struct Series {
    std::string labels;
    std::string value;
};

struct Family {
    const char* name;
    const char* type;
    const char* help;
    std::vector<Series> series;
};

std::string labels(std::initializer_list<std::pair<const char*, std::string>> kv)
{
    std::string out;
    for (const auto& [k, v] : kv) {
        if (!out.empty())
            out += ',';
        out += k;
        out += "=\"";
        out += prometheus_label_value(v);
        out += '"';
    }
    return out;
}

// Exited processes of one command name, folded.
struct ExitedComm {
    std::map<std::string, SiteRow> sites;
    uint64_t dropped = 0;
};

}  // namespace

std::string prometheus_label_value(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string prometheus_help_text(std::string_view text)
{
    std::string out;
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string prometheus_text(const json& snapshot, size_t top)
{
    Family acquired{"connleak_connections_acquired_total",
                    "counter",
                    "libpq connections (PGconn) acquired, per process and acquiring site",
                    {}};
    Family released{"connleak_connections_released_total",
                    "counter",
                    "libpq connections finished (PQfinish), per process and acquiring site",
                    {}};
    Family active{"connleak_connections_active",
                  "gauge",
                  "libpq connections acquired and not yet finished, per process and acquiring site",
                  {}};
    Family leaked{"connleak_connections_leaked",
                  "gauge",
                  "live connections held --leak-after seconds or longer, per process and acquiring site",
                  {}};
    Family at_exit{"connleak_connections_leaked_at_exit_total",
                   "counter",
                   "connections still live when their process exited, per command and acquiring site",
                   {}};
    Family sockets{"connleak_db_sockets", "gauge", "sockets to a database server the process holds", {}};
    Family discrepancy{"connleak_tracking_discrepancy",
                       "gauge",
                       "db sockets minus active libpq connections (what libpq tracking misses when positive)",
                       {}};
    Family dropped{"connleak_dropped_total",
                   "counter",
                   "acquisitions, processes or inherited handles a full kernel map had no room for",
                   {}};
    Family otel{"db_client_connection_count",
                "gauge",
                "OpenTelemetry db.client.connection.count: live libpq connections by state (used, idle: "
                "pooled and idle)",
                {}};

    // Idle is known only once connections carry their pool and state.
    bool pools_known = false;
    for (const json& p : json_list(snapshot, "processes"))
        for (const json& c : json_list(p, "connections"))
            pools_known = pools_known || c.contains("pooled");

    std::map<std::string, ExitedComm> exited;
    for (const json& p : json_list(snapshot, "processes")) {
        const std::string comm = json_text(p, "comm");
        const std::vector<SiteRow> rows = sites_with_rest(json_list(p, "top_connection_users"), p);
        if (p.value("exited", false)) {
            ExitedComm& e = exited[comm];
            for (const SiteRow& r : rows) {
                SiteRow& into = e.sites[r.site];
                into.site = r.site;
                into.add(r);
            }
            e.dropped += json_count(p, "dropped");
            continue;
        }
        const std::string pid = std::to_string(json_count(p, "pid"));
        for (const SiteRow& r : rows) {
            const std::string l = labels({{"pid", pid}, {"comm", comm}, {"site", r.site}});
            acquired.series.push_back({l, std::to_string(r.acquired)});
            released.series.push_back({l, std::to_string(r.released)});
            active.series.push_back({l, std::to_string(r.active)});
            leaked.series.push_back({l, std::to_string(r.leaks)});
        }
        const std::string pl = labels({{"pid", pid}, {"comm", comm}});
        if (p.contains("db_sockets")) {
            sockets.series.push_back({pl, std::to_string(json_count(p, "db_sockets"))});
            discrepancy.series.push_back({pl, std::to_string(json_int(p, "tracking_discrepancy"))});
        }
        dropped.series.push_back({pl, std::to_string(json_count(p, "dropped"))});
        uint64_t idle = 0;
        for (const json& c : json_list(p, "connections"))
            if (c.value("pooled", false) && json_text(c, "state") == "idle")
                idle++;
        const uint64_t live = json_count(p, "active");
        otel.series.push_back({labels({{"pid", pid}, {"comm", comm}, {"db_client_connection_state", "used"}}),
                               std::to_string(minus(live, idle))});
        if (pools_known)
            otel.series.push_back(
                {labels({{"pid", pid}, {"comm", comm}, {"db_client_connection_state", "idle"}}), std::to_string(idle)});
    }
    for (const json& g : json_list(snapshot, "exited_folded")) {
        ExitedComm& e = exited[json_text(g, "comm")];
        for (const SiteRow& r : sites_with_rest(json_list(g, "sites"), g)) {
            SiteRow& into = e.sites[r.site];
            into.site = r.site;
            into.add(r);
        }
        e.dropped += json_count(g, "dropped");
    }
    for (const auto& [comm, e] : exited) {
        std::vector<SiteRow> rows;
        SiteRow rest;
        rest.site = kOtherSites;
        for (const auto& [name, r] : e.sites) {
            if (name == kOtherSites)
                rest.add(r);
            else
                rows.push_back(r);
        }
        std::sort(rows.begin(), rows.end(), [](const SiteRow& a, const SiteRow& b) {
            return std::make_tuple(b.leaked_at_exit, b.acquired, a.site) <
                   std::make_tuple(a.leaked_at_exit, a.acquired, b.site);
        });
        while (rows.size() > top) {
            rest.add(rows.back());
            rows.pop_back();
        }
        if (!rest.empty())
            rows.push_back(rest);
        for (const SiteRow& r : rows) {
            const std::string l = labels({{"pid", kExitedPid}, {"comm", comm}, {"site", r.site}});
            acquired.series.push_back({l, std::to_string(r.acquired)});
            released.series.push_back({l, std::to_string(r.released)});
            at_exit.series.push_back({l, std::to_string(r.leaked_at_exit)});
        }
        dropped.series.push_back({labels({{"pid", kExitedPid}, {"comm", comm}}), std::to_string(e.dropped)});
    }

    std::string out;
    for (const Family* f :
         {&acquired, &released, &active, &leaked, &at_exit, &sockets, &discrepancy, &dropped, &otel}) {
        out += "# HELP ";
        out += f->name;
        out += ' ';
        out += prometheus_help_text(f->help);
        out += "\n# TYPE ";
        out += f->name;
        out += ' ';
        out += f->type;
        out += '\n';
        for (const Series& s : f->series) {
            out += f->name;
            out += '{';
            out += s.labels;
            out += "} ";
            out += s.value;
            out += '\n';
        }
    }
    return out;
}

}  // namespace connleak
