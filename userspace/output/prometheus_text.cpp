#include "prometheus_text.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>
#include <vector>

#include "safe_text.h"

namespace connleak {
namespace {

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

SiteRow site_row(const SiteReport& s)
{
    SiteRow r;
    r.site = s.site;
    r.acquired = s.acquired;
    r.released = s.released;
    r.active = s.active;
    r.leaks = s.leaks;
    r.leaked_at_exit = s.leaked_at_exit;
    return r;
}

uint64_t minus(uint64_t whole, uint64_t part)
{
    return whole > part ? whole - part : 0;
}

// The listed sites of a process (or folded group), and what the listed
// ones leave of its totals as one more row.
std::vector<SiteRow> sites_with_rest(const std::vector<SiteReport>& sites, const SiteRow& totals)
{
    std::vector<SiteRow> rows;
    SiteRow sum;
    for (const SiteReport& s : sites) {
        rows.push_back(site_row(s));
        sum.add(rows.back());
    }
    SiteRow rest;
    rest.site = kOtherSites;
    rest.acquired = minus(totals.acquired, sum.acquired);
    rest.released = minus(totals.released, sum.released);
    rest.active = minus(totals.active, sum.active);
    rest.leaks = minus(totals.leaks, sum.leaks);
    rest.leaked_at_exit = minus(totals.leaked_at_exit, sum.leaked_at_exit);
    if (!rest.empty())
        rows.push_back(rest);
    return rows;
}

SiteRow totals_of(const ProcessReport& p)
{
    SiteRow t;
    t.acquired = p.acquired;
    t.released = p.released;
    t.active = p.active;
    t.leaks = p.leaks;
    t.leaked_at_exit = p.leaked_at_exit;
    return t;
}

SiteRow totals_of(const ExitedGroup& g)
{
    SiteRow t;
    t.acquired = g.acquired;
    t.released = g.released;
    t.leaked_at_exit = g.leaked_at_exit;
    return t;
}

// A metric family: its HELP and TYPE, then its series as text, appended
// as they come (a scrape of 1,000 processes x 10 sites is ~50,000 lines).
struct Family {
    Family(const char* name, const char* type, const char* help) : name(name), type(type), help(help) {}

    const char* name;
    const char* type;
    const char* help;
    std::string body;

    template <typename Number>
    void add(const std::string& labels, Number value)
    {
        char num[24];
        const auto end = std::to_chars(num, num + sizeof(num), value).ptr;
        body.append(name).append(1, '{').append(labels).append("} ", 2).append(num, end - num).append(1, '\n');
    }
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

// A running process's container (ContainerLabels): ",container_id=...,
// pod_uid=..." for the parts known, nothing outside any. One value per
// process, so no more series than the pid label already makes.
std::string container_labels(const ProcessReport& p)
{
    std::string out;
    if (!p.container_id.empty())
        out += "," + labels({{"container_id", utf8_text(p.container_id)}});
    if (!p.pod_uid.empty())
        out += "," + labels({{"pod_uid", utf8_text(p.pod_uid)}});
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

std::string prometheus_text(const Snapshot& snapshot, size_t top)
{
    Family acquired{"connleak_connections_acquired_total", "counter",
                    "libpq connections (PGconn) acquired, per process and acquiring site"};
    Family released{"connleak_connections_released_total", "counter",
                    "libpq connections finished (PQfinish), per process and acquiring site"};
    Family active{"connleak_connections_active", "gauge",
                  "libpq connections acquired and not yet finished, per process and acquiring site"};
    Family leaked{"connleak_connections_leaked", "gauge",
                  "live connections held --leak-after seconds or longer, per process and acquiring site"};
    Family at_exit{"connleak_connections_leaked_at_exit_total", "counter",
                   "connections still live when their process exited, per command and acquiring site"};
    Family sockets{"connleak_db_sockets", "gauge", "sockets to a database server the process holds"};
    Family discrepancy{"connleak_tracking_discrepancy", "gauge",
                       "db sockets minus active libpq connections (what libpq tracking misses when positive)"};
    Family dropped{"connleak_dropped_total", "counter",
                   "acquisitions, processes or inherited handles a full kernel map had no room for"};
    Family otel{"db_client_connection_count", "gauge",
                "OpenTelemetry db.client.connection.count: live libpq connections by state (used, idle: "
                "pooled and idle)"};

    std::map<std::string, ExitedComm> exited;
    for (const ProcessReport& p : snapshot.processes) {
        const std::string comm = utf8_text(p.comm);
        const std::vector<SiteRow> rows = sites_with_rest(p.sites, totals_of(p));
        if (p.exited) {
            ExitedComm& e = exited[comm];
            for (const SiteRow& r : rows) {
                SiteRow& into = e.sites[utf8_text(r.site)];
                into.site = utf8_text(r.site);
                into.add(r);
            }
            e.dropped += p.dropped;
            continue;
        }
        const std::string pid = std::to_string(p.pid);
        const std::string pl = labels({{"pid", pid}, {"comm", comm}}) + container_labels(p);
        std::string l;
        for (const SiteRow& r : rows) {
            l.assign(pl).append(",site=\"").append(prometheus_label_value(utf8_text(r.site))).append(1, '"');
            acquired.add(l, r.acquired);
            released.add(l, r.released);
            active.add(l, r.active);
            leaked.add(l, r.leaks);
        }
        if (p.sockets.tracked) {
            sockets.add(pl, p.sockets.db_sockets);
            discrepancy.add(pl, p.sockets.tracking_discrepancy);
        }
        dropped.add(pl, p.dropped);
        // Every live handle is in use by the process until connections say
        // they sit idle in a pool (then: an "idle" series beside it).
        otel.add(pl + "," + labels({{"db_client_connection_state", "used"}}), p.active);
    }
    for (const ExitedGroup& g : snapshot.exited_folded) {
        ExitedComm& e = exited[utf8_text(g.comm)];
        for (const SiteRow& r : sites_with_rest(g.sites, totals_of(g))) {
            SiteRow& into = e.sites[utf8_text(r.site)];
            into.site = utf8_text(r.site);
            into.add(r);
        }
        e.dropped += g.dropped;
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
            acquired.add(l, r.acquired);
            released.add(l, r.released);
            at_exit.add(l, r.leaked_at_exit);
        }
        dropped.add(labels({{"pid", kExitedPid}, {"comm", comm}}), e.dropped);
    }

    const Family* families[] = {&acquired, &released,    &active,  &leaked, &at_exit,
                                &sockets,  &discrepancy, &dropped, &otel};
    size_t size = 0;
    for (const Family* f : families)
        size += f->body.size() + 256;
    std::string out;
    out.reserve(size);
    for (const Family* f : families) {
        out += "# HELP ";
        out += f->name;
        out += ' ';
        out += prometheus_help_text(f->help);
        out += "\n# TYPE ";
        out += f->name;
        out += ' ';
        out += f->type;
        out += '\n';
        out += f->body;
    }
    return out;
}

}  // namespace connleak
