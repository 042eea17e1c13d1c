// The snapshot document built one process at a time (snapshot_text) must be
// byte for byte the document of the whole tree (what it replaced).
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "json_output.h"
#include "model.h"
#include "snapshot_document.h"

using namespace connleak;

namespace {

ConnReport conn(uint64_t address, double age_ms)
{
    ConnReport c;
    c.conn = address;
    c.tid = 7;
    c.site = "get_users+0x3c (api)\n\"quoted\"";
    c.age_ms = age_ms;
    c.leak = age_ms > 1000;
    c.frames = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"a", "b (x.py:3)"});
    c.state_known = true;
    c.state = ConnState::idle;
    c.database = "db";
    c.user = "u";
    c.socket = "open";
    c.peer = "127.0.0.1:5432";
    c.idle_ms = 12.5;
    c.last_used_site = "run (app.py:9)";
    c.last_used_frames = c.frames;
    return c;
}

ProcessReport process(uint32_t pid, size_t conns, bool sockets)
{
    ProcessReport p;
    p.pid = pid;
    p.comm = "api\t" + std::to_string(pid);
    p.acquired = conns + 3;
    p.released = 3;
    p.active = conns;
    p.container_id = pid % 2 ? "abc" : "";
    SiteReport s;
    s.site = "get_users+0x3c (api)";
    s.acquired = conns;
    s.active = conns;
    s.states["idle"] = conns;
    p.sites.push_back(s);
    for (size_t i = 0; i < conns; i++) {
        ConnReport c = conn(0x1000 + i, 2000.0 - i * 0.37);
        // Every form a value takes: unknown state, no socket, no last user...
        if (i % 2) {
            c.state = ConnState::unknown;
            const uint8_t lo[4] = {127, 0, 0, 1};
            c.local = connleak::Peer::inet4(lo, 40000);
            c.backend_pid = 4242;
        }
        if (i % 3 == 1) {
            c.idle_ms = -1;
            c.last_used_site.clear();
            c.peer.clear();
            c.state = ConnState::in_transaction;
            c.backend_pid = 99;
        }
        if (i % 3 == 2) {
            c.last_used_frames = nullptr;
            c.site = "ctl\x01\x1f\x7f tab\t \xc3\xa9 bad\xff";
            c.state_known = false;
            c.pooled = true;
        }
        p.connections.push_back(c);
    }
    p.states["idle"] = conns;
    p.sockets.tracked = sockets;
    p.sockets.db_sockets = conns;
    return p;
}

}  // namespace

TEST_CASE("snapshot_text: the same bytes as the whole tree dumped", "[json]")
{
    Snapshot s;
    s.wall_time_s = 1795723200;
    s.leak_after_s = 1.5;
    s.connections_shown = 3;
    SECTION("no process")
    {
        CHECK(snapshot_text(s) == snapshot_document(snapshot_to_json(s)));
    }
    SECTION("processes, connections beyond the listed ones, notices, folded groups, sockets")
    {
        s.totals.sockets_tracked = true;
        s.processes.push_back(process(10, 5, true));
        s.processes.push_back(process(11, 0, true));
        s.processes.push_back(process(12, 2, false));
        s.processes.push_back(process(13, 7, true));
        s.processes.back().exited = true;
        Notice n;
        n.seq = 1;
        n.kind = "leak";
        n.pid = 10;
        n.site = "s";
        s.notices.push_back(n);
        ExitedGroup g;
        g.comm = "worker";
        g.processes = 4;
        s.exited_folded.push_back(g);
        s.exited_folded_processes = 4;
        const std::string text = snapshot_text(s);
        CHECK(text == snapshot_document(snapshot_to_json(s)));
        CHECK(nlohmann::ordered_json::parse(text)["processes"][0]["connections"].size() == 3);
        // In pieces: the same bytes, in order.
        std::string pieces;
        size_t count = 0;
        write_snapshot_text(s, [&](std::string_view piece) {
            pieces += piece;
            count++;
        });
        CHECK(pieces == text);
        CHECK(count >= 1);
        s.connections_shown = 100;
        CHECK(snapshot_text(s) == snapshot_document(snapshot_to_json(s)));
    }
    SECTION("with --server, whose keys join each connection")
    {
        s.processes.push_back(process(10, 4, true));
        s.servers.push_back(ServerSummary{});
        CHECK(snapshot_text(s) == snapshot_document(snapshot_to_json(s)));
    }
    SECTION("more than a piece: written in several, the same bytes")
    {
        s.connections_shown = 100;
        s.connections_listed_max = 100000;  // 6,000 listed: over a piece
        for (uint32_t pid = 100; pid < 400; pid++)
            s.processes.push_back(process(pid, 20, true));
        std::vector<size_t> sizes;
        std::string pieces;
        write_snapshot_text(s, [&](std::string_view piece) {
            pieces += piece;
            sizes.push_back(piece.size());
        });
        CHECK(sizes.size() > 1);
        CHECK(pieces == snapshot_document(snapshot_to_json(s)));
    }
}

TEST_CASE("snapshot_text: a process entry written as text, every key in each of its forms", "[json]")
{
    Snapshot s;
    s.wall_time_s = 1795723200;
    s.totals.sockets_tracked = true;
    ProcessReport p = process(20, 3, true);
    p.comm = "bad\xff utf8 \"q\"";
    p.acquired = 18446744073709551615ull;  // above int64's range
    p.container_id.clear();
    p.pod_uid = "pod-1";
    p.pool_slots_lost = 2;
    p.states["in_transaction"] = 1;
    p.sockets.tracking_discrepancy = -4;
    p.sockets.pre_attach_peers["127.0.0.1:5432"] = 2;
    p.sockets.untracked_peers["/run/pg \"x\"\n.s.PGSQL.5432"] = 1;
    SiteReport none = p.sites.front();
    none.site = "no stack (x.py:1)";
    none.frames = nullptr;
    none.states.clear();
    none.avg_ms = 12.34567;
    none.max_ms = 1e300;
    p.sites.push_back(none);
    SiteReport empty = none;
    empty.frames = std::make_shared<const std::vector<std::string>>();
    p.sites.push_back(empty);
    LastUserReport known;
    known.site = "run (app.py:9)";
    known.frames = p.connections.front().frames;
    known.connections = 3;
    known.pooled = 1;
    known.checked_out = 1;
    known.leaks = 1;
    LastUserReport no_frames = known;
    no_frames.site = "other (app.py:1)";
    no_frames.frames = nullptr;
    p.last_users = {known, no_frames, LastUserReport{}};
    p.last_users_total = 5;
    s.processes.push_back(p);
    ProcessReport bare;  // nothing: empty lists and objects, no sockets
    bare.pid = 21;
    s.processes.push_back(bare);
    // Notices in each form: a pooled leak (in_transaction_ms), a release, no frames.
    Notice leak;
    leak.seq = 7;
    leak.kind = "leak";
    leak.wall_time_s = 1795723201;
    leak.pid = 20;
    leak.tid = 21;
    leak.comm = "w\xff\"";
    leak.conn = 0xdeadbeef;
    leak.age_ms = 1234.56;
    leak.site = "a\tb (x.py:2)";
    leak.pooled = true;
    leak.in_transaction_ms = 99.99;
    leak.frames = p.connections.front().frames;
    Notice released = leak;
    released.seq = 8;
    released.kind = "released";
    released.frames = nullptr;
    Notice plain = leak;
    plain.pooled = false;
    s.notices = {leak, released, plain};
    for (size_t listed : {size_t{0}, size_t{2}, size_t{100}}) {
        s.connections_shown = listed ? listed : 1;
        s.connections_listed_max = listed ? 1000 : 0;
        CHECK(snapshot_text(s) == snapshot_document(snapshot_to_json(s)));
    }
}
