// --server: the pure join of pg_stat_activity with the traced processes'
// sockets (model/server_join, model/server_rows) and its formats (JSON,
// text report, live view).
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "json_output.h"
#include "leak_notices.h"
#include "model.h"
#include "screen_layout.h"
#include "server_rows.h"
#include "server_text.h"
#include "text_report.h"

using namespace connleak;
using json = nlohmann::ordered_json;

namespace {

constexpr uint64_t kMs = 1000000;

Peer v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    const uint8_t addr[4] = {a, b, c, d};
    return Peer::inet4(addr, port);
}

Peer unix_path(const std::string& path)
{
    return Peer::unix_path(path.c_str(), path.size());
}

ServerSession session(uint32_t pid, const char* state, double backend_age_ms, double state_age_ms)
{
    ServerSession s;
    s.backend_pid = pid;
    s.state = std::string(state);
    s.backend_start = std::string("2026-11-28T20:00:01Z");
    s.xact_start = std::string("2026-11-28T20:00:02Z");
    s.state_change = std::string("2026-11-28T20:00:03Z");
    s.wait_event = std::string("ClientRead");
    s.query = std::string("select 1");
    s.backend_age_ms = backend_age_ms;
    s.state_age_ms = state_age_ms;
    return s;
}

// One server with three sessions: a TCP one (client 127.0.0.1:40112), a
// Unix one (backend socket inode 900), and one of another client.
ServerJoinInput input()
{
    ServerJoinInput in;
    in.enabled = true;
    in.now_ns = 10000 * kMs;
    ServerRead r;
    r.server = "127.0.0.1:5432";
    r.ok = true;
    r.read_ns = 9000 * kMs;  // read one second before the snapshot
    ServerSession tcp = session(81234, "idle in transaction", 60000, 45000);
    tcp.client = v4(127, 0, 0, 1, 40112);
    ServerSession unix_one = session(81235, "idle", 20000, 19000);
    ServerSession other = session(81236, "active", 5000, 5000);
    other.client = v4(127, 0, 0, 1, 40999);
    r.sessions = {tcp, unix_one, other};
    r.backend_by_socket[900] = 81235;
    in.servers.push_back(r);
    // pid 42 holds: the TCP socket (inode 11), the Unix one (12, peer 900),
    // and a TCP socket to somewhere else (13).
    in.held[42] = {{11, v4(127, 0, 0, 1, 40112), v4(127, 0, 0, 1, 5432), 0},
                   {12, {}, unix_path("/run/postgresql/.s.PGSQL.5432"), 900},
                   {13, v4(127, 0, 0, 1, 40500), v4(127, 0, 0, 1, 80), 0}};
    return in;
}

Snapshot snapshot_with_process(double leak_after_s)
{
    Snapshot snap;
    snap.leak_after_s = leak_after_s;
    ProcessReport p;
    p.pid = 42;
    p.comm = "api";
    p.acquired = 4;
    p.active = 1;
    p.sockets.tracked = true;
    ConnReport traced;
    traced.conn = 0xabc;
    traced.tid = 43;
    traced.site = "get_users+0x3c (api)";
    traced.age_ms = 2000;
    p.connections.push_back(traced);
    snap.processes.push_back(p);
    snap.totals.acquired = 4;
    snap.totals.active = 1;
    return snap;
}

}  // namespace

TEST_CASE("a TCP socket joins by its local end, a Unix one through its peer inode")
{
    const ServerJoinInput in = input();
    const auto m = match_sockets(in.held.at(42), in.servers);
    REQUIRE(m.size() == 2);
    CHECK(m.at(11).session->backend_pid == 81234);
    CHECK(m.at(12).session->backend_pid == 81235);
    CHECK(m.count(13) == 0);
}

TEST_CASE("a server whose read failed joins nothing")
{
    ServerJoinInput in = input();
    in.servers[0].ok = false;
    CHECK(match_sockets(in.held.at(42), in.servers).empty());
}

TEST_CASE("a traced handle gets its socket's backend; the others held since before the attach are listed")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11, 12, 13};
    Snapshot snap = snapshot_with_process(30);
    snap.processes[0].sockets.conns[0xabc] = ConnSocket{"/run/postgresql/.s.PGSQL.5432", "open", Peer(), 12};
    join_server_view(snap, in);
    const ProcessReport& p = snap.processes[0];
    REQUIRE(p.connections.size() == 2);  // 13 leads to no server; 12 is the handle's
    // Oldest first: the pre-attach one (backend 61 s old now) before the handle (2 s).
    const ConnReport& pre = p.connections[0];
    CHECK(pre.pre_attach);
    CHECK(pre.conn == 0);
    REQUIRE(pre.server);
    CHECK(pre.server->backend_pid == 81234);
    CHECK(pre.age_ms == Approx(61000));  // the server's age at the read, plus the second since
    CHECK(pre.server->state_age_ms == Approx(46000));
    CHECK(pre.server->peer == "127.0.0.1:5432");
    CHECK(pre.server->socket == "open");
    CHECK(pre.leak);  // 61 s >= 30 s, and idle in a transaction 46 s
    const ConnReport& traced = p.connections[1];
    CHECK_FALSE(traced.pre_attach);
    REQUIRE(traced.server);
    CHECK(traced.server->backend_pid == 81235);
    CHECK(*traced.server->state == "idle");
    CHECK(p.leaks == 1);
    CHECK(snap.totals.leaks == 1);
    CHECK(snap.totals.leak_ratio == Approx(25.0));
    REQUIRE(snap.servers.size() == 1);
    CHECK(snap.servers[0].ok);
    CHECK(snap.servers[0].sessions == 3);
}

TEST_CASE("pre-attach leak rules: old enough, or idle in a transaction long enough")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11, 12};
    SECTION("young and idle: not a leak")
    {
        Snapshot snap = snapshot_with_process(100);
        join_server_view(snap, in);
        for (const ConnReport& c : snap.processes[0].connections)
            CHECK_FALSE(c.leak);
        CHECK(snap.processes[0].leaks == 0);
    }
    SECTION("idle in a transaction for leak-after: a leak whatever its age")
    {
        in.servers[0].sessions[0].backend_age_ms = 50000;  // younger than leak-after 55 s...
        in.servers[0].sessions[0].state_age_ms = 54500;    // ...not possible on a server, but the rule is apart
        Snapshot snap = snapshot_with_process(55);
        join_server_view(snap, in);
        const auto& cs = snap.processes[0].connections;
        REQUIRE(cs.size() == 3);
        int leaks = 0;
        for (const ConnReport& c : cs)
            leaks += c.leak;
        CHECK(leaks == 1);
        CHECK(snap.processes[0].leaks == 1);
    }
    SECTION("leak-after 0: every pre-attach connection")
    {
        Snapshot snap = snapshot_with_process(0);
        join_server_view(snap, in);
        CHECK(snap.processes[0].leaks == 2);
    }
}

TEST_CASE("only sockets held at the attach are pre-attach; without --server nothing changes")
{
    ServerJoinInput in = input();
    Snapshot snap = snapshot_with_process(0);
    join_server_view(snap, in);  // no pre_attach recorded (a launched command)
    CHECK(snap.processes[0].connections.size() == 1);
    in.enabled = false;
    in.pre_attach[42] = {11};
    Snapshot plain = snapshot_with_process(0);
    join_server_view(plain, in);
    CHECK(plain.processes[0].connections.size() == 1);
    CHECK(plain.servers.empty());
}

TEST_CASE("queries are cut at a UTF-8 boundary, and left out with --server-queries off")
{
    CHECK(cut_query("select 1", 100) == "select 1");
    CHECK(cut_query("select 'é'", 9) == "select '");  // é is 2 bytes: never half of it
    CHECK(cut_query("abc", 2) == "ab");
    ServerJoinInput in = input();
    in.pre_attach[42] = {11};
    in.query_max = 3;
    Snapshot snap = snapshot_with_process(0);
    join_server_view(snap, in);
    CHECK(*snap.processes[0].connections[0].server->query == "sel");
    in.queries = false;
    Snapshot off = snapshot_with_process(0);
    join_server_view(off, in);
    CHECK_FALSE(off.processes[0].connections[0].server->query.has_value());
}

TEST_CASE("JSON: server keys per connection, conn null before the attach, servers at the top")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11};
    Snapshot snap = snapshot_with_process(30);
    join_server_view(snap, in);
    const json j = snapshot_to_json(snap);
    REQUIRE(j["servers"] == json::parse(R"([{"server": "127.0.0.1:5432", "ok": true, "sessions": 3}])"));
    const json& conns = j["processes"][0]["connections"];
    REQUIRE(conns.size() == 2);
    const json& pre = conns[0];
    CHECK(pre["conn"].is_null());
    CHECK(pre["tid"].is_null());
    CHECK(pre["pre_attach"] == true);
    CHECK(pre["backend_pid"] == 81234);
    CHECK(pre["age_ms"] == 61000.0);
    CHECK(pre["leak"] == true);
    CHECK(pre["peer"] == "127.0.0.1:5432");
    CHECK(pre["socket"] == "open");
    CHECK(
        pre["server"].dump() ==
        R"({"state":"idle in transaction","backend_start":"2026-11-28T20:00:01Z","xact_start":"2026-11-28T20:00:02Z",)"
        R"("state_change":"2026-11-28T20:00:03Z","wait_event":"ClientRead","query":"select 1"})");
    const json& traced = conns[1];
    CHECK(traced["conn"] == "0xabc");
    CHECK(traced["pre_attach"] == false);
    CHECK(traced["server"].is_null());       // its socket is unknown: not joined
    CHECK(traced["backend_pid"].is_null());  // not joined, and no handle read

    Snapshot plain = snapshot_with_process(30);
    const json p = snapshot_to_json(plain);
    CHECK_FALSE(p.contains("servers"));
    CHECK_FALSE(p["processes"][0]["connections"][0].contains("server"));
    CHECK_FALSE(p["processes"][0]["connections"][0].contains("pre_attach"));
}

TEST_CASE("a field the role may not see is null, and the text says ?")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11};
    in.servers[0].sessions[0].state.reset();
    in.servers[0].sessions[0].query.reset();
    Snapshot snap = snapshot_with_process(0);
    join_server_view(snap, in);
    const json j = snapshot_to_json(snap);
    CHECK(j["processes"][0]["connections"][0]["server"]["state"].is_null());
    CHECK(server_cell(snap.processes[0].connections[0]) == "?");
}

TEST_CASE("text report: the server state beside each listed connection")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11};
    Snapshot snap = snapshot_with_process(30);
    join_server_view(snap, in);
    const std::string text = render_text_report(snap);
    INFO(text);
    CHECK(
        text.find("  CONNECTION           THREAD        HELD STATE            SERVER                        SITE\n") !=
        std::string::npos);
    CHECK(text.find("  pre-attach                -  1 min 01 s -                idle in transaction 46.0 s\n") !=
          std::string::npos);
}

TEST_CASE("live view: idle in transaction in red beside the connection")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11, 12};
    Snapshot snap = snapshot_with_process(100);
    join_server_view(snap, in);
    LayoutParams params;
    params.width = 120;
    params.height = 40;
    ViewState view;
    Trends trends;
    const Screen screen = layout_screen(snap, trends, view, params);
    bool red_state = false, plain_idle = false;
    for (const Line& l : screen.lines)
        for (const Span& s : l) {
            if (s.text.rfind("idle in transaction 46.0 s", 0) == 0)
                red_state = s.style == Style::Leak;
            if (s.text.rfind("idle 20.0 s", 0) == 0)
                plain_idle = s.style == Style::Plain;
        }
    CHECK(red_state);
    CHECK(plain_idle);
}

TEST_CASE("a pre-attach leak is listed, not noticed (no handle, no stack to name)")
{
    ServerJoinInput in = input();
    in.pre_attach[42] = {11, 12};
    Snapshot snap = snapshot_with_process(0);
    snap.processes[0].connections[0].leak = true;  // the traced handle: noticed
    join_server_view(snap, in);
    LeakNotices notices;
    const std::vector<Notice> batch = notices.update(snap);
    REQUIRE(batch.size() == 1);
    CHECK(batch[0].conn == 0xabc);
    CHECK(notices.update(snap).empty());  // and no "released" for the pre-attach ones either
}

TEST_CASE("a handle's own backend PID joins it to its session before any socket does")
{
    ServerJoinInput in = input();
    Snapshot snap = snapshot_with_process(30);
    snap.processes[0].connections[0].backend_pid = 81236;  // no socket known for it
    join_server_view(snap, in);
    const ConnReport& c = snap.processes[0].connections[0];
    REQUIRE(c.server);
    CHECK(c.server->backend_pid == 81236);
    CHECK(c.server->state == "active");

    // The same PID on two servers says nothing: no join by it.
    ServerJoinInput two = input();
    ServerRead again = two.servers[0];
    again.server = "10.0.0.2:5432";
    two.servers.push_back(again);
    Snapshot snap2 = snapshot_with_process(30);
    snap2.processes[0].connections[0].backend_pid = 81236;
    join_server_view(snap2, two);
    CHECK_FALSE(snap2.processes[0].connections[0].server);
}

TEST_CASE("a pre-attach socket inherited by several traced processes is one connection, listed once")
{
    // A preloaded master (42) connected at import; its two workers (43, 44)
    // inherited the socket (inode 11): one backend, one row, one leak.
    ServerJoinInput in = input();
    in.held[43] = in.held[42];
    in.held[44] = in.held[42];
    in.pre_attach[42] = {11};
    in.pre_attach[43] = {11};
    in.pre_attach[44] = {11};
    Snapshot snap = snapshot_with_process(30);
    snap.processes[0].connections.clear();
    for (uint32_t pid : {43u, 44u}) {
        ProcessReport w = snap.processes[0];
        w.pid = pid;
        snap.processes.push_back(w);
    }
    join_server_view(snap, in);
    size_t rows = 0;
    for (const ProcessReport& p : snap.processes)
        rows += p.connections.size();
    CHECK(rows == 1);
    REQUIRE(snap.processes[0].connections.size() == 1);  // under the lowest pid
    CHECK(snap.processes[0].connections[0].server->backend_pid == 81234);
    CHECK(snap.processes[0].leaks == 1);
    CHECK(snap.processes[1].leaks == 0);
    CHECK(snap.totals.leaks == 1);
}
