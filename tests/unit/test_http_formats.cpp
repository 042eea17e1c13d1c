// The --http formats (output/health_json, prometheus_text, dashboard_html)
// and --http's address: shapes, escaping, exact sums, bounded series.
#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "dashboard_html.h"
#include "health_json.h"
#include "http_server.h"
#include "json_output.h"
#include "model.h"
#include "prometheus_text.h"

using namespace connleak;
using json = nlohmann::ordered_json;

namespace {

SiteReport site(const std::string& name, uint64_t acquired, uint64_t released, uint64_t active, uint64_t leaks,
                double avg_ms = 0, uint64_t at_exit = 0)
{
    SiteReport s;
    s.site = name;
    s.acquired = acquired;
    s.released = released;
    s.active = active;
    s.leaks = leaks;
    s.leaked_at_exit = at_exit;
    s.avg_ms = avg_ms;
    return s;
}

ProcessReport process(uint32_t pid, const std::string& comm, bool exited, std::vector<SiteReport> sites)
{
    ProcessReport p;
    p.pid = pid;
    p.comm = comm;
    p.exited = exited;
    for (const SiteReport& s : sites) {
        p.acquired += s.acquired;
        p.released += s.released;
        p.active += s.active;
        p.leaks += s.leaks;
        p.leaked_at_exit += s.leaked_at_exit;
    }
    p.sites = std::move(sites);
    return p;
}

void total(Snapshot& s)
{
    s.totals = {};
    for (const ProcessReport& p : s.processes) {
        s.totals.acquired += p.acquired;
        s.totals.released += p.released;
        s.totals.active += p.active;
        s.totals.leaks += p.leaks;
        s.totals.leaked_at_exit += p.leaked_at_exit;
    }
    for (const ExitedGroup& g : s.exited_folded) {
        s.totals.acquired += g.acquired;
        s.totals.released += g.released;
        s.totals.leaked_at_exit += g.leaked_at_exit;
    }
    s.totals.leak_ratio = s.totals.acquired ? 100.0 * s.totals.leaks / s.totals.acquired : 0;
}

// A service of two workers (one route leaks in both), an exited helper.
Snapshot service()
{
    Snapshot s;
    s.wall_time_s = 1795723200;  // 2026-11-26T20:00:00Z
    s.leak_after_s = 30;
    s.processes.push_back(
        process(100, "gunicorn", false,
                {site("leaky_route (app.py:12)", 10, 7, 3, 2, 10.0), site("ok_route (app.py:20)", 4, 4, 0, 0, 30.0)}));
    s.processes.push_back(
        process(101, "gunicorn", false,
                {site("leaky_route (app.py:12)", 5, 4, 1, 1, 40.0), site("ok_route (app.py:20)", 2, 2, 0, 0, 60.0)}));
    s.processes.push_back(process(102, "job", true, {site("main (job.c:5)", 3, 1, 0, 0, 5.0, 2)}));
    total(s);
    return s;
}

// The value of the series `name{labels}` in exposition text, or -1.
std::map<std::string, double> series(const std::string& text)
{
    std::map<std::string, double> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#')
            continue;
        const size_t sp = line.rfind(' ');
        out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
    }
    return out;
}

double sum_of(const std::map<std::string, double>& s, const std::string& family, const std::string& having = "")
{
    double total = 0;
    for (const auto& [k, v] : s)
        if (k.rfind(family + "{", 0) == 0 && k.find(having) != std::string::npos)
            total += v;
    return total;
}

}  // namespace

TEST_CASE("--http address: [ADDR:]PORT", "[http]")
{
    auto a = parse_http_address("9187");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 9187);
    CHECK(a->loopback);
    a = parse_http_address("0.0.0.0:80");
    REQUIRE(a);
    CHECK(a->host == "0.0.0.0");
    CHECK_FALSE(a->loopback);
    a = parse_http_address("[::1]:8080");
    REQUIRE(a);
    CHECK(a->host == "::1");
    CHECK(a->loopback);
    a = parse_http_address("127.1.2.3:0");
    REQUIRE(a);
    CHECK(a->port == 0);
    CHECK(a->loopback);
    a = parse_http_address("localhost:9000");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    a = parse_http_address("[::]:1");
    REQUIRE(a);
    CHECK_FALSE(a->loopback);
    for (const char* bad : {"", "abc", "65536", "-1", "1.2.3:80", "::1:80", "[::1]", "[::1]80", "host.example:80",
                            "127.0.0.1:", ":80", "127.0.0.1:8o", "999999"})
        CHECK_FALSE(parse_http_address(bad));
    CHECK(http_url("::1", 80) == "http://[::1]:80");
    CHECK(http_url("127.0.0.1", 9187) == "http://127.0.0.1:9187");
}

TEST_CASE("/health/detailed: the seed's shape, routes merged over workers", "[http]")
{
    Snapshot s = service();
    s.totals.sockets_tracked = true;
    s.totals.db_sockets = 6;
    s.totals.tracking_discrepancy = 2;
    const json h = health_detailed_json(snapshot_to_json(s), 10);
    CHECK(h["status"] == "degraded");
    CHECK(h["timestamp"] == "2026-11-26T20:00:00Z");
    const json& db = h["checks"]["database_pool"];
    std::vector<std::string> keys;
    for (const auto& item : db.items())
        keys.push_back(item.key());
    CHECK(keys ==
          std::vector<std::string>{"checked_out", "tracking_stats", "tracking_discrepancy", "top_connection_users"});
    CHECK(db["checked_out"] == 6);
    CHECK(db["tracking_discrepancy"] == 2);
    CHECK(db["tracking_stats"] == json{{"total_acquired", 24},
                                       {"total_released", 18},
                                       {"total_active", 4},
                                       {"total_leaks", 3},
                                       {"leak_ratio", 12.5}});
    const json& users = db["top_connection_users"];
    REQUIRE(users.size() == 3);
    // The leaking route first; 10.0 ms x 7 and 40.0 ms x 4 over 11 releases.
    CHECK(users[0] == json{{"route", "leaky_route (app.py:12)"},
                           {"acquired", 15},
                           {"released", 11},
                           {"active", 4},
                           {"leaks", 3},
                           {"avg_ms", 20.9}});
    CHECK(users[1]["route"] == "ok_route (app.py:20)");
    CHECK(users[1]["acquired"] == 6);
    CHECK(users[1]["avg_ms"] == 40.0);
    CHECK(users[2]["route"] == "main (job.c:5)");
    CHECK(health_detailed_json(snapshot_to_json(s), 1)["checks"]["database_pool"]["top_connection_users"].size() == 1);
}

TEST_CASE("/health/detailed: healthy, and without socket tracking", "[http]")
{
    Snapshot s;
    s.processes.push_back(process(7, "api", false, {site("f (api)", 2, 1, 1, 0)}));
    total(s);
    json h = health_detailed_json(snapshot_to_json(s), 10);
    CHECK(h["status"] == "healthy");
    CHECK(h["checks"]["database_pool"]["checked_out"] == 1);  // the handles stand in for sockets
    CHECK(h["checks"]["database_pool"]["tracking_discrepancy"] == 0);
    s.totals.sockets_tracked = true;
    s.totals.db_sockets = 0;
    s.totals.tracking_discrepancy = -1;
    h = health_detailed_json(snapshot_to_json(s), 10);
    CHECK(h["status"] == "degraded");
    CHECK(h["checks"]["database_pool"]["checked_out"] == 0);
    CHECK(h["checks"]["database_pool"]["tracking_discrepancy"] == -1);
}

TEST_CASE("Prometheus label values and HELP are escaped", "[http]")
{
    CHECK(prometheus_label_value("plain (a.py:1)") == "plain (a.py:1)");
    CHECK(prometheus_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
    CHECK(prometheus_label_value("é → x") == "é → x");
    CHECK(prometheus_help_text("a\\b\nc \"q\"") == "a\\\\b\\nc \"q\"");
}

TEST_CASE("/metrics: families with HELP and TYPE, each once, before their series", "[http]")
{
    Snapshot s = service();
    const std::string text = prometheus_text(s, 10);
    std::istringstream in(text);
    std::string line, family;
    std::map<std::string, int> helps, types;
    const std::regex series_re(R"(([a-z_]+)\{([a-z_]+="([^"\\]|\\.)*"(,[a-z_]+="([^"\\]|\\.)*")*)\} -?[0-9]+)");
    while (std::getline(in, line)) {
        std::smatch m;
        if (line.rfind("# HELP ", 0) == 0) {
            family = line.substr(7, line.find(' ', 7) - 7);
            helps[family]++;
        } else if (line.rfind("# TYPE ", 0) == 0) {
            CHECK(line.substr(7, line.find(' ', 7) - 7) == family);
            types[family]++;
        } else {
            INFO(line);
            REQUIRE(std::regex_match(line, m, series_re));
            CHECK(m[1] == family);
        }
    }
    for (const char* f : {"connleak_connections_acquired_total", "connleak_connections_released_total",
                          "connleak_connections_active", "connleak_connections_leaked", "connleak_db_sockets",
                          "connleak_tracking_discrepancy", "db_client_connection_count"}) {
        CHECK(helps[f] == 1);
        CHECK(types[f] == 1);
    }
    CHECK(text.find("# TYPE connleak_connections_acquired_total counter\n") != std::string::npos);
    CHECK(text.find("# TYPE connleak_connections_active gauge\n") != std::string::npos);
}

TEST_CASE("/metrics: per-site series sum exactly to the totals, the rest as (other sites)", "[http]")
{
    Snapshot s = service();
    // Worker 100 acquired 6 more at sites beyond --top (not listed).
    s.processes[0].acquired += 6;
    s.processes[0].released += 5;
    s.processes[0].active += 1;
    total(s);
    const auto m = series(prometheus_text(s, 10));
    CHECK(sum_of(m, "connleak_connections_acquired_total") == s.totals.acquired);
    CHECK(sum_of(m, "connleak_connections_released_total") == s.totals.released);
    CHECK(sum_of(m, "connleak_connections_active") == s.totals.active);
    CHECK(sum_of(m, "connleak_connections_leaked") == s.totals.leaks);
    CHECK(m.at(R"~(connleak_connections_acquired_total{pid="100",comm="gunicorn",site="(other sites)"})~") == 6);
    CHECK(m.at(R"~(connleak_connections_active{pid="100",comm="gunicorn",site="leaky_route (app.py:12)"})~") == 3);
    CHECK(m.count(R"~(connleak_connections_acquired_total{pid="101",comm="gunicorn",site="(other sites)"})~") == 0);
    // The exited job: folded under its command name, pid="exited".
    CHECK(m.at(R"~(connleak_connections_acquired_total{pid="exited",comm="job",site="main (job.c:5)"})~") == 3);
    CHECK(m.at(R"~(connleak_connections_leaked_at_exit_total{pid="exited",comm="job",site="main (job.c:5)"})~") == 2);
    CHECK(m.count(R"~(connleak_connections_active{pid="102",comm="job",site="main (job.c:5)"})~") == 0);
    // Without pools known, every live handle is "used" (OpenTelemetry's state).
    CHECK(m.at(R"~(db_client_connection_count{pid="100",comm="gunicorn",db_client_connection_state="used"})~") == 4);
    CHECK(m.count(R"~(db_client_connection_count{pid="100",comm="gunicorn",db_client_connection_state="idle"})~") == 0);
}

TEST_CASE("/metrics: exited processes of one command folded, their sites bounded by --top", "[http]")
{
    Snapshot s;
    for (uint32_t pid = 200; pid < 210; pid++)
        s.processes.push_back(process(pid, "worker", true,
                                      {site("s" + std::to_string(pid % 4) + " (w.py:1)", pid - 199, pid - 199, 0, 0)}));
    ExitedGroup g;
    g.comm = "worker";
    g.processes = 50;
    g.acquired = g.released = 100;
    g.sites.push_back(site("s9 (w.py:9)", 100, 100, 0, 0));
    s.exited_folded.push_back(g);
    s.exited_folded_processes = 50;
    total(s);
    const auto m = series(prometheus_text(s, 2));
    size_t n = 0;
    for (const auto& [k, v] : m)
        if (k.rfind("connleak_connections_acquired_total{", 0) == 0) {
            n++;
            CHECK(k.find("pid=\"exited\",comm=\"worker\"") != std::string::npos);
        }
    CHECK(n == 3);  // two sites and the rest
    CHECK(sum_of(m, "connleak_connections_acquired_total") == s.totals.acquired);
    CHECK(m.at(R"~(connleak_connections_acquired_total{pid="exited",comm="worker",site="s9 (w.py:9)"})~") == 100);
}

TEST_CASE("/metrics: site and comm label values escaped", "[http]")
{
    Snapshot s;
    s.processes.push_back(process(5, "a\"b", false, {site("f\\g \"h\"\nnext", 1, 0, 1, 1)}));
    total(s);
    const std::string text = prometheus_text(s, 10);
    CHECK(text.find(R"~(connleak_connections_leaked{pid="5",comm="a\"b",site="f\\g \"h\"\nnext"} 1)~") !=
          std::string::npos);
}

TEST_CASE("dashboard: leak rows red, healthy rows green, reloads itself, nothing external", "[http]")
{
    Snapshot s = service();
    s.processes[0].sites.push_back(site("<script>alert(1)</script> & 'x'", 1, 1, 0, 0));
    ConnReport c;
    c.conn = 0x55d0c8a1b2c0;
    c.tid = 4243;
    c.site = "leaky_route (app.py:12)";
    c.age_ms = 31250;
    c.leak = true;
    s.processes[0].connections.push_back(c);
    DashboardOptions o;
    o.refresh_s = 3;
    const std::string page = dashboard_html(snapshot_to_json(s), o);
    CHECK(page.find("<meta http-equiv=\"refresh\" content=\"3\">") != std::string::npos);
    CHECK(page.find("<tr class=\"leak\"><td>gunicorn (100)</td><td class=\"site\">leaky_route (app.py:12)</td>") !=
          std::string::npos);
    CHECK(page.find("<tr class=\"healthy\"><td>gunicorn (100)</td><td class=\"site\">ok_route (app.py:20)</td>") !=
          std::string::npos);
    // An exited process's handles never finished: a leak row.
    CHECK(page.find("<tr class=\"leak\"><td>job (102, exited)</td>") != std::string::npos);
    CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;x&#39;") != std::string::npos);
    CHECK(page.find("<script") == std::string::npos);
    CHECK(page.find("src=") == std::string::npos);
    CHECK(page.find("http://") == std::string::npos);
    CHECK(page.find("https://") == std::string::npos);
    CHECK(page.find("id=\"dbTrackingActive\">4<") != std::string::npos);
    CHECK(page.find("0x55d0c8a1b2c0") != std::string::npos);
    CHECK(page.find("<th>State</th>") == std::string::npos);  // no connection says its state
}

TEST_CASE("dashboard: a connection's state and last user shown once the snapshot has them", "[http]")
{
    json snap = snapshot_to_json(service());
    snap["processes"][0]["connections"].push_back({{"conn", "0x10"},
                                                   {"tid", 9},
                                                   {"site", "pool_get (db.py:3)"},
                                                   {"age_ms", 100.0},
                                                   {"leak", false},
                                                   {"state", "in_transaction"},
                                                   {"last_used_site", "leaky_route (app.py:12)"},
                                                   {"server", {{"state", "idle in transaction"}}}});
    const std::string page = dashboard_html(snap, {});
    CHECK(page.find("<th>State</th>") != std::string::npos);
    CHECK(page.find("<th>Last User</th>") != std::string::npos);
    CHECK(page.find("<th>Server State</th>") != std::string::npos);
    CHECK(page.find("<td>in_transaction</td><td>leaky_route (app.py:12)</td><td>idle in transaction</td>") !=
          std::string::npos);
}

TEST_CASE("html_escape", "[http]")
{
    CHECK(html_escape("a<b>&\"c'") == "a&lt;b&gt;&amp;&quot;c&#39;");
}
