// The version-1 JSON snapshot: its keys, their order and the form of every
// value are a contract (DESIGN.md "JSON snapshot").
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "json_output.h"
#include "model.h"
#include "time_format.h"

using connleak::ConnReport;
using connleak::format_utc;
using connleak::ProcessReport;
using connleak::SiteReport;
using connleak::Snapshot;
using connleak::snapshot_to_json;
using json = nlohmann::ordered_json;

namespace {

std::vector<std::string> keys(const json& j)
{
    std::vector<std::string> out;
    for (const auto& item : j.items())
        out.push_back(item.key());
    return out;
}

// True when every key of `contract` appears in `actual`, in the same order
// (extensions may be interleaved).
bool in_order(const std::vector<std::string>& contract, const std::vector<std::string>& actual)
{
    size_t i = 0;
    for (const std::string& k : actual)
        if (i < contract.size() && k == contract[i])
            i++;
    return i == contract.size();
}

SiteReport site_report(const std::string& name)
{
    SiteReport s;
    s.site = name;
    s.acquired = 150;
    s.released = 147;
    s.active = 3;
    s.leaks = 3;
    s.leaked_at_exit = 0;
    s.avg_ms = 125.54;
    s.max_ms = 900.06;
    return s;
}

ConnReport conn_report()
{
    ConnReport c;
    c.conn = 0x55d0c8a1b2c0;
    c.tid = 4243;
    c.site = "get_users+0x3c (api)";
    c.age_ms = 31250.04;
    c.leak = true;
    return c;
}

// The example of DESIGN.md, as the model would hand it over.
Snapshot design_example()
{
    Snapshot s;
    s.wall_time_s = 1795723200;  // 2026-11-26T20:00:00Z
    s.leak_after_s = 30;
    s.totals.acquired = 500;
    s.totals.released = 485;
    s.totals.active = 15;
    s.totals.leaks = 15;
    s.totals.leak_ratio = 3.0;
    ProcessReport p;
    p.pid = 4242;
    p.comm = "api";
    p.acquired = 500;
    p.released = 485;
    p.active = 15;
    p.leaks = 15;
    p.sites.push_back(site_report("get_users+0x3c (api)"));
    p.connections.push_back(conn_report());
    s.processes.push_back(p);
    return s;
}

}  // namespace

TEST_CASE("format_utc writes RFC 3339 UTC", "[json]")
{
    CHECK(format_utc(0) == "1970-01-01T00:00:00Z");
    CHECK(format_utc(1795723200) == "2026-11-26T20:00:00Z");
    CHECK(format_utc(951782400) == "2000-02-29T00:00:00Z");
    CHECK(format_utc(951782400 - 1) == "2000-02-28T23:59:59Z");
    CHECK(format_utc(2147483648) == "2038-01-19T03:14:08Z");  // past 32-bit time_t
    CHECK(format_utc(4102444799) == "2099-12-31T23:59:59Z");
    CHECK(format_utc(-1) == "1969-12-31T23:59:59Z");
}

TEST_CASE("the top level: version 1, time, leak_after_s, tracking_stats, processes", "[json]")
{
    json j = snapshot_to_json(design_example());
    CHECK(keys(j) == std::vector<std::string>{"version", "time", "leak_after_s", "tracking_stats", "processes",
                                              "notices", "exited_folded", "exited_folded_processes", "last_users",
                                              "last_users_total", "connections_listed"});
    CHECK(j["version"].is_number_integer());
    CHECK(j["version"] == 1);
    CHECK(j["time"] == "2026-11-26T20:00:00Z");
    CHECK(j["leak_after_s"].is_number());
    CHECK(j["leak_after_s"].get<double>() == 30.0);
    CHECK(j["processes"].is_array());
    CHECK(j["processes"].size() == 1);
}

TEST_CASE("tracking_stats keys and values", "[json]")
{
    Snapshot s = design_example();
    s.totals.leaked_at_exit = 4;
    s.totals.dropped = 9;
    const json t = snapshot_to_json(s)["tracking_stats"];
    CHECK(keys(t) == std::vector<std::string>{"total_acquired", "total_released", "total_active", "total_leaks",
                                              "leak_ratio", "total_leaked_at_exit", "total_dropped"});
    // The contract's keys (db sockets come with that feature), in its order.
    CHECK(in_order({"total_acquired", "total_released", "total_active", "total_leaks", "leak_ratio"}, keys(t)));
    CHECK(t["total_acquired"] == 500);
    CHECK(t["total_released"] == 485);
    CHECK(t["total_active"] == 15);
    CHECK(t["total_leaks"] == 15);
    CHECK(t["leak_ratio"].get<double>() == 3.0);
    CHECK(t["total_leaked_at_exit"] == 4);
    CHECK(t["total_dropped"] == 9);
}

TEST_CASE("each process has its keys in contract order", "[json]")
{
    Snapshot s = design_example();
    ProcessReport& p = s.processes[0];
    p.exited = true;
    p.released_untracked = 2;
    p.released_inherited = 3;
    p.leaked_at_exit = 6;
    p.pings = 7;
    p.resets = 8;
    p.dropped = 9;
    const json jp = snapshot_to_json(s)["processes"][0];
    CHECK(keys(jp) == std::vector<std::string>{"pid",
                                               "comm",
                                               "exited",
                                               "acquired",
                                               "released",
                                               "released_untracked",
                                               "released_inherited",
                                               "active",
                                               "leaks",
                                               "leaked_at_exit",
                                               "pings",
                                               "resets",
                                               "dropped",
                                               "dropped_stacks",
                                               "stacks_unwound",
                                               "stacks_truncated",
                                               "python_stacks",
                                               "python_frames_truncated",
                                               "top_connection_users",
                                               "connections",
                                               "connections_total",
                                               "container",

                                               "states",
                                               "pool_slots_lost",
                                               "last_users",
                                               "last_users_total"});
    CHECK(in_order({"pid", "comm", "exited", "acquired", "released", "released_untracked", "active", "leaks",
                    "leaked_at_exit", "pings", "dropped", "top_connection_users", "connections"},
                   keys(jp)));
    CHECK(jp["pid"] == 4242);
    CHECK(jp["comm"] == "api");
    CHECK(jp["exited"] == true);
    CHECK(jp["exited"].is_boolean());
    CHECK(jp["acquired"] == 500);
    CHECK(jp["released"] == 485);
    CHECK(jp["released_untracked"] == 2);
    CHECK(jp["released_inherited"] == 3);
    CHECK(jp["active"] == 15);
    CHECK(jp["leaks"] == 15);
    CHECK(jp["leaked_at_exit"] == 6);
    CHECK(jp["pings"] == 7);
    CHECK(jp["resets"] == 8);
    CHECK(jp["dropped"] == 9);
}

TEST_CASE("each site: keys in order, ms rounded to 0.1", "[json]")
{
    const json js = snapshot_to_json(design_example())["processes"][0]["top_connection_users"][0];
    CHECK(keys(js) == std::vector<std::string>{"site", "acquired", "released", "active", "leaks", "leaked_at_exit",
                                               "avg_ms", "max_ms", "states", "pool_slots_lost"});
    CHECK(in_order({"site", "acquired", "released", "active", "leaks", "avg_ms", "max_ms"}, keys(js)));
    CHECK(js["site"] == "get_users+0x3c (api)");
    CHECK(js["acquired"] == 150);
    CHECK(js["released"] == 147);
    CHECK(js["active"] == 3);
    CHECK(js["leaks"] == 3);
    CHECK(js["leaked_at_exit"] == 0);
    CHECK(js["avg_ms"].get<double>() == 125.5);
    CHECK(js["max_ms"].get<double>() == 900.1);
    // As written, not only as parsed: no 125.54000000001.
    CHECK(js.dump().find("\"avg_ms\":125.5,") != std::string::npos);
    CHECK(js.dump().find("\"max_ms\":900.1,") != std::string::npos);
}

TEST_CASE("each connection: keys in order, conn as a 0x hex string", "[json]")
{
    const json jc = snapshot_to_json(design_example())["processes"][0]["connections"][0];
    CHECK(keys(jc) == std::vector<std::string>{"conn", "tid", "site", "age_ms", "leak", "idle_ms", "last_used_site",
                                               "last_used_frames", "state", "backend_pid", "database", "user",
                                               "pooled"});
    CHECK(jc["conn"].is_string());
    CHECK(jc["conn"] == "0x55d0c8a1b2c0");
    CHECK(jc["tid"] == 4243);
    CHECK(jc["site"] == "get_users+0x3c (api)");
    CHECK(jc["age_ms"].get<double>() == 31250.0);
    CHECK(jc["leak"] == true);
    CHECK(jc["leak"].is_boolean());
}

TEST_CASE("with sockets tracked, each connection adds peer, local and socket", "[json]")
{
    Snapshot s = design_example();
    s.processes[0].sockets.tracked = true;
    ConnReport& c = s.processes[0].connections[0];
    c.peer = "127.0.0.1:5432";
    const uint8_t lo[4] = {127, 0, 0, 1};
    c.local = connleak::Peer::inet4(lo, 40112);
    c.socket = "open";
    c.socket_inode = 77;  // for joins inside connleak: not in the JSON
    ConnReport unix_conn = conn_report();
    unix_conn.conn = 0x10;
    unix_conn.peer = "/run/postgresql/.s.PGSQL.5432";
    unix_conn.socket = "peer_closed";
    ConnReport no_socket = conn_report();
    no_socket.conn = 0x20;
    no_socket.socket = "none";
    s.processes[0].connections.push_back(unix_conn);
    s.processes[0].connections.push_back(no_socket);
    const json jc = snapshot_to_json(s)["processes"][0]["connections"];
    CHECK(jc[0].dump() ==
          "{\"conn\":\"0x55d0c8a1b2c0\",\"tid\":4243,\"site\":\"get_users+0x3c (api)\",\"age_ms\":31250.0,"
          "\"leak\":true,\"peer\":\"127.0.0.1:5432\",\"local\":\"127.0.0.1:40112\",\"socket\":\"open\","
          "\"idle_ms\":null,\"last_used_site\":null,\"last_used_frames\":null,\"state\":null,"
          "\"backend_pid\":null,\"database\":null,\"user\":null,\"pooled\":false}");
    CHECK(keys(jc[1]) == std::vector<std::string>{"conn", "tid", "site", "age_ms", "leak", "peer", "local", "socket",
                                                  "idle_ms", "last_used_site", "last_used_frames", "state",
                                                  "backend_pid", "database", "user", "pooled"});
    CHECK(jc[1]["peer"] == "/run/postgresql/.s.PGSQL.5432");
    CHECK(jc[1]["local"].is_null());  // Unix socket
    CHECK(jc[1]["socket"] == "peer_closed");
    CHECK(jc[2]["peer"].is_null());
    CHECK(jc[2]["local"].is_null());
    CHECK(jc[2]["socket"] == "none");
}

TEST_CASE("conn addresses: lower-case hex, no padding, full 64 bits", "[json]")
{
    auto conn_string = [](uint64_t addr) {
        Snapshot s = design_example();
        s.processes[0].connections[0].conn = addr;
        return snapshot_to_json(s)["processes"][0]["connections"][0]["conn"].get<std::string>();
    };
    CHECK(conn_string(0) == "0x0");
    CHECK(conn_string(0xABCDEF) == "0xabcdef");
    CHECK(conn_string(0x7fffffffffff) == "0x7fffffffffff");
    CHECK(conn_string(std::numeric_limits<uint64_t>::max()) == "0xffffffffffffffff");
}

TEST_CASE("milliseconds are rounded to 0.1", "[json]")
{
    auto age = [](double ms) {
        Snapshot s = design_example();
        s.processes[0].connections[0].age_ms = ms;
        return snapshot_to_json(s)["processes"][0]["connections"][0]["age_ms"].get<double>();
    };
    CHECK(age(0.0) == 0.0);
    CHECK(age(0.04) == 0.0);
    CHECK(age(0.06) == 0.1);
    CHECK(age(2.25) == 2.3);  // exactly representable half: away from zero
    CHECK(age(1500.25) == 1500.3);
    CHECK(age(999.94) == 999.9);
    CHECK(age(999.96) == 1000.0);
    CHECK(age(31250.0) == 31250.0);
    CHECK(age(86400000.04) == 86400000.0);
}

TEST_CASE("leak_ratio is rounded to 0.01", "[json]")
{
    auto ratio = [](double r) {
        Snapshot s = design_example();
        s.totals.leak_ratio = r;
        return snapshot_to_json(s)["tracking_stats"]["leak_ratio"].get<double>();
    };
    CHECK(ratio(0.0) == 0.0);
    CHECK(ratio(100.0 / 3) == 33.33);
    CHECK(ratio(200.0 / 3) == 66.67);
    CHECK(ratio(100.0) == 100.0);
    CHECK(ratio(0.004) == 0.0);
    CHECK(ratio(0.006) == 0.01);
    CHECK(ratio(37.5) == 37.5);
}

TEST_CASE("empty lists are empty arrays, never null", "[json]")
{
    SECTION("no processes")
    {
        Snapshot s;
        json j = snapshot_to_json(s);
        CHECK(j["processes"].is_array());
        CHECK(j["processes"].empty());
        CHECK(j.dump().find("\"processes\":[]") != std::string::npos);
        CHECK(j["tracking_stats"]["leak_ratio"].get<double>() == 0.0);
    }
    SECTION("a process with no sites and no connections")
    {
        Snapshot s;
        ProcessReport p;
        p.pid = 1;
        p.comm = "idle";
        s.processes.push_back(p);
        json j = snapshot_to_json(s);
        const json& jp = j["processes"][0];
        CHECK(jp["top_connection_users"].is_array());
        CHECK(jp["top_connection_users"].empty());
        CHECK(jp["connections"].is_array());
        CHECK(jp["connections"].empty());
        std::string text = j.dump();
        CHECK(text.find("\"top_connection_users\":[]") != std::string::npos);
        CHECK(text.find("\"connections\":[]") != std::string::npos);
        // The one null: outside any container.
        CHECK(jp["container"].is_null());
        CHECK(text.find("null") == text.rfind("null"));
    }
}

TEST_CASE("lists keep the model's order", "[json]")
{
    Snapshot s = design_example();
    ProcessReport second;
    second.pid = 9;
    second.comm = "b";
    s.processes.push_back(second);
    s.processes[0].sites.push_back(site_report("second site"));
    ConnReport c2 = conn_report();
    c2.conn = 0x1;
    s.processes[0].connections.push_back(c2);
    json j = snapshot_to_json(s);
    CHECK(j["processes"][0]["pid"] == 4242);
    CHECK(j["processes"][1]["pid"] == 9);
    CHECK(j["processes"][0]["top_connection_users"][1]["site"] == "second site");
    CHECK(j["processes"][0]["connections"][1]["conn"] == "0x1");
}

TEST_CASE("from raw counters to JSON", "[json][model]")
{
    connleak::RawState raw;
    raw.now_ns = 1000'000'000'000;
    raw.wall_time_s = 0;
    connleak::RawProcess p;
    p.pid = 12;
    p.comm = "app";
    p.stats.acquired = 3;
    p.stats.released = 1;
    raw.processes.push_back(p);
    connleak::RawSite site;
    site.pid = 12;
    site.site = connleak::SiteKey::caller(0x401000);
    site.stats.acquired = 3;
    site.stats.released = 1;
    site.stats.hold_ns_total = 12'345'678;
    site.stats.hold_ns_max = 12'345'678;
    raw.sites.push_back(site);
    connleak::RawConn c;
    c.pid = 12;
    c.conn = 0xbeef;
    c.site = connleak::SiteKey::caller(0x401000);
    c.info.tid = 13;
    c.info.acquired_ns = raw.now_ns - 31'250'000'000;
    raw.conns.push_back(c);
    c.conn = 0xcafe;
    c.info.acquired_ns = raw.now_ns - 1'000'000;
    raw.conns.push_back(c);

    connleak::ModelOptions o;
    o.leak_after_s = 30;
    json j = snapshot_to_json(build_snapshot(raw, o, [](const connleak::RawSite&) { return "main+0x10 (app)"; }));
    CHECK(j["time"] == "1970-01-01T00:00:00Z");
    CHECK(j["tracking_stats"]["total_active"] == 2);
    CHECK(j["tracking_stats"]["total_leaks"] == 1);
    CHECK(j["tracking_stats"]["leak_ratio"].get<double>() == 33.33);
    const json& jp = j["processes"][0];
    CHECK(jp["top_connection_users"][0]["avg_ms"].get<double>() == 12.3);
    CHECK(jp["top_connection_users"][0]["max_ms"].get<double>() == 31250.0);
    CHECK(jp["connections"][0]["conn"] == "0xbeef");
    CHECK(jp["connections"][0]["leak"] == true);
    CHECK(jp["connections"][1]["conn"] == "0xcafe");
    CHECK(jp["connections"][1]["age_ms"].get<double>() == 1.0);
    CHECK(jp["connections"][1]["leak"] == false);
}

TEST_CASE("strings are escaped: one snapshot stays one JSON line", "[json]")
{
    Snapshot s = design_example();
    s.processes[0].comm = "a\"b\\c\nd\te";
    s.processes[0].sites[0].site = "f\n(g)";
    std::string line = snapshot_to_json(s).dump();
    CHECK(line.find('\n') == std::string::npos);
    CHECK(json::parse(line)["processes"][0]["comm"] == "a\"b\\c\nd\te");
}

// (A bug in the version first tested: a comm or site name that was not valid
// UTF-8 made dump() throw nlohmann type_error 316, and both callers, the JSON
// Lines sink and the JSON file, let it terminate the tool. The kernel cuts
// comm at 15 bytes, which can split a multi-byte character; module names are
// file names, any bytes. Fixed in f6e0f2f; kept as a regression test.)
TEST_CASE("names that are not valid UTF-8 still give a writable snapshot, bad bytes as \\xNN", "[json]")
{
    Snapshot s = design_example();
    s.processes[0].comm = "import_donn\xc3";                   // "import_donné" cut inside the "é"
    s.processes[0].sites[0].site = "run+0x1 (libcaf\xe9.so)";  // a Latin-1 file name
    s.processes[0].connections[0].site = s.processes[0].sites[0].site;
    json j = snapshot_to_json(s);
    CHECK_NOTHROW(j.dump());
    CHECK_NOTHROW(j.dump(2));
    CHECK(j["processes"][0]["comm"] == "import_donn\\xc3");
    CHECK(j["processes"][0]["top_connection_users"][0]["site"] == "run+0x1 (libcaf\\xe9.so)");
    CHECK(j["processes"][0]["connections"][0]["site"] == "run+0x1 (libcaf\\xe9.so)");
}

TEST_CASE("valid UTF-8 names are kept as they are", "[json]")
{
    Snapshot s = design_example();
    s.processes[0].comm = "donn\xc3\xa9"
                          "es";                                           // "données"
    s.processes[0].sites[0].site = "\xe6\x9f\xa5\xe8\xaf\xa2+0x1 (app)";  // CJK
    json j = json::parse(snapshot_to_json(s).dump());
    CHECK(j["processes"][0]["comm"] == "donn\xc3\xa9"
                                       "es");
    CHECK(j["processes"][0]["top_connection_users"][0]["site"] == "\xe6\x9f\xa5\xe8\xaf\xa2+0x1 (app)");
}
