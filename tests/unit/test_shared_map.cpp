// The socket tracer hands each process's kept socket report out every
// interval; its per-handle sockets are shared by the copies, never copied,
// and a change made to one copy is never seen by another.
#include <catch2/catch.hpp>

#include "model.h"
#include "socket_model.h"

using namespace connleak;

namespace {

ProcessSocketReport kept_report()
{
    ProcessSocketReport r;
    r.tracked = true;
    r.db_sockets = 2;
    r.paired = 2;
    r.conns[0x10] = {"127.0.0.1:5432", "open", *parse_db_host("127.0.0.1:40001"), 101, 5, 0};
    r.conns[0x20] = {"127.0.0.1:5432", "peer_closed", *parse_db_host("127.0.0.1:40002"), 102, 6, 0};
    return r;
}

}  // namespace

TEST_CASE("A socket report's copy shares its handles' sockets instead of copying them")
{
    const ProcessSocketReport kept = kept_report();
    const ProcessSocketReport handed_out = kept;  // what each interval's raw state gets
    CHECK(handed_out.conns.shares_with(kept.conns));
    CHECK(handed_out.conns.size() == 2);
    CHECK(handed_out.conns.at(0x20).state == "peer_closed");
    CHECK(socket_of(handed_out, 0x10).local.str() == "127.0.0.1:40001");
    CHECK(socket_of(handed_out, 0x30).state.empty());
}

TEST_CASE("A change to one copy of a socket report is seen by that copy only")
{
    const ProcessSocketReport kept = kept_report();
    ProcessSocketReport copy = kept;
    copy.conns[0x20].state = "closed";
    copy.conns[0x30] = {"127.0.0.1:5432", "open", *parse_db_host("127.0.0.1:40003"), 103, 7, 0};
    CHECK_FALSE(copy.conns.shares_with(kept.conns));
    CHECK(kept.conns.size() == 2);
    CHECK(kept.conns.at(0x20).state == "peer_closed");
    CHECK(kept.conns.count(0x30) == 0);
    CHECK(copy.conns.size() == 3);
    CHECK(copy.conns.at(0x20).state == "closed");

    // The other way: the kept one changed (a rebuilt report), the copy handed out before stays.
    ProcessSocketReport rebuilt = kept;
    const ProcessSocketReport before = rebuilt;
    rebuilt.conns[0x10].state = "peer_closed";
    CHECK(before.conns.at(0x10).state == "open");
    CHECK(rebuilt.conns.at(0x10).state == "peer_closed");

    // A copy no one shares is changed in place.
    ProcessSocketReport own = kept_report();
    const ConnSocket* first = &own.conns.at(0x10);
    own.conns[0x10].state = "closed";
    CHECK(&own.conns.at(0x10) == first);
}

TEST_CASE("The model's rows show the sockets of a shared report, and leave the kept report as it was")
{
    const ProcessSocketReport kept = kept_report();
    RawState raw;
    raw.now_ns = 10'000'000'000;
    raw.sockets_tracked = true;
    RawProcess p;
    p.pid = 42;
    p.comm = "app";
    p.stats.acquired = 2;
    raw.processes.push_back(p);
    for (uint64_t conn : {0x10, 0x20}) {
        RawConn c;
        c.pid = 42;
        c.conn = conn;
        c.info.acquired_ns = 1'000'000'000;
        raw.conns.push_back(c);
    }
    raw.sockets[42] = kept;
    const Snapshot snap = build_snapshot(std::move(raw), ModelOptions{}, [](const RawSite&) { return "site"; });
    REQUIRE(snap.processes.size() == 1);
    const ProcessReport& r = snap.processes[0];
    REQUIRE(r.connections.size() == 2);
    CHECK(r.connections[0].socket == "open");
    CHECK(r.connections[0].local.str() == "127.0.0.1:40001");
    CHECK(r.connections[1].socket == "peer_closed");
    CHECK(r.sockets.tracking_discrepancy == 0);
    CHECK(r.sockets.conns.shares_with(kept.conns));
    CHECK(kept.conns.size() == 2);
    CHECK(kept.conns.at(0x10).state == "open");
}

TEST_CASE("Entries added out of key order are found, each key once, in key order")
{
    SharedMap<uint64_t, int> m;
    m[30] = 3;
    m[10] = 1;
    m[20] = 2;
    m[10] = 11;  // the same key: changed, not added
    m[40] = 4;
    REQUIRE(m.size() == 4);
    std::vector<uint64_t> keys;
    for (const auto& [k, v] : m)
        keys.push_back(k);
    CHECK(keys == std::vector<uint64_t>{10, 20, 30, 40});
    CHECK(m.at(10) == 11);
    CHECK(m.at(20) == 2);
    CHECK(m.count(25) == 0);
    CHECK(m.find(25) == m.end());
    CHECK_THROWS_AS(m.at(25), std::out_of_range);
}
