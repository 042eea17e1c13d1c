// build_snapshot: raw map contents in, the report's numbers out. Every rule
// of DESIGN.md "Words" is checked here with exact numbers.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "model.h"

using connleak::build_snapshot;
using connleak::ConnReport;
using connleak::ModelOptions;
using connleak::ProcessReport;
using connleak::RawConn;
using connleak::RawProcess;
using connleak::RawSite;
using connleak::RawState;
using connleak::SiteReport;
using connleak::Snapshot;

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kNow = 10'000 * kSec;  // the monotonic clock when the maps were read

// Builds a RawState the way the tracer would read it from the maps. Ages are
// given relative to now_ns, so tests read as "a handle 45 s old".
class RawBuilder {
public:
    explicit RawBuilder(uint64_t now_ns = kNow)
    {
        raw_.now_ns = now_ns;
        raw_.wall_time_s = 1795723200;
    }

    RawBuilder& process(uint32_t pid, const std::string& comm, uint64_t acquired = 0, uint64_t released = 0)
    {
        RawProcess p;
        p.pid = pid;
        p.comm = comm;
        p.stats.acquired = acquired;
        p.stats.released = released;
        raw_.processes.push_back(p);
        return *this;
    }
    // The counters of a process added before, to set the less common ones.
    connleak::ProcessCounts& stats(uint32_t pid)
    {
        for (RawProcess& p : raw_.processes)
            if (p.pid == pid)
                return p.stats;
        FAIL("no process " << pid << " in the builder");
        throw;  // unreachable
    }
    RawBuilder& exited(uint32_t pid, uint64_t at_ns = kNow - kSec)
    {
        stats(pid).exited_ns = at_ns;
        return *this;
    }
    // A live handle acquired `age_ns` before now.
    RawBuilder& conn(uint32_t pid, uint64_t conn, uint64_t site, uint64_t age_ns, uint32_t tid = 0)
    {
        return conn_acquired_at(pid, conn, site, raw_.now_ns - age_ns, tid);
    }
    RawBuilder& conn_acquired_at(uint32_t pid, uint64_t conn, uint64_t site, uint64_t acquired_ns, uint32_t tid = 0)
    {
        RawConn c;
        c.pid = pid;
        c.conn = conn;
        c.info.acquired_ns = acquired_ns;
        c.info.start_ns = acquired_ns;
        c.site = connleak::SiteKey::caller(site);
        c.info.tid = tid ? tid : pid;
        raw_.conns.push_back(c);
        return *this;
    }
    RawBuilder& site(uint32_t pid, uint64_t addr, uint64_t acquired, uint64_t released = 0, uint64_t hold_ns_total = 0,
                     uint64_t hold_ns_max = 0)
    {
        RawSite s;
        s.pid = pid;
        s.site = connleak::SiteKey::caller(addr);
        s.stats.acquired = acquired;
        s.stats.released = released;
        s.stats.hold_ns_total = hold_ns_total;
        s.stats.hold_ns_max = hold_ns_max;
        raw_.sites.push_back(s);
        return *this;
    }
    const RawState& raw() const { return raw_; }

private:
    RawState raw_;
};

// "site_<hex address>", or a name the test chose for that address.
struct TestNamer {
    std::map<uint64_t, std::string> names;
    std::vector<RawSite>* seen = nullptr;  // every site the model asked about

    std::string operator()(const RawSite& s) const
    {
        if (seen)
            seen->push_back(s);
        if (auto it = names.find(s.site.value); it != names.end())
            return it->second;
        char buf[40];
        std::snprintf(buf, sizeof(buf), "site_%llx", static_cast<unsigned long long>(s.site.value));
        return buf;
    }
};

Snapshot snapshot(const RawBuilder& b, double leak_after_s = 30, size_t top_sites = 10,
                  const TestNamer& namer = TestNamer{})
{
    ModelOptions o;
    o.leak_after_s = leak_after_s;
    o.top_sites = top_sites;
    return build_snapshot(b.raw(), o, namer);
}

const ProcessReport& proc(const Snapshot& s, uint32_t pid)
{
    for (const ProcessReport& p : s.processes)
        if (p.pid == pid)
            return p;
    FAIL("no process " << pid << " in the snapshot");
    throw;
}

const SiteReport& site(const ProcessReport& p, const std::string& name)
{
    for (const SiteReport& s : p.sites)
        if (s.site == name)
            return s;
    FAIL("no site " << name << " in process " << p.pid);
    throw;
}

const ConnReport& conn(const ProcessReport& p, uint64_t addr)
{
    for (const ConnReport& c : p.connections)
        if (c.conn == addr)
            return c;
    FAIL("no connection " << addr << " in process " << p.pid);
    throw;
}

std::vector<std::string> site_names(const ProcessReport& p)
{
    std::vector<std::string> out;
    for (const SiteReport& s : p.sites)
        out.push_back(s.site);
    return out;
}

std::vector<uint64_t> conn_order(const ProcessReport& p)
{
    std::vector<uint64_t> out;
    for (const ConnReport& c : p.connections)
        out.push_back(c.conn);
    return out;
}

}  // namespace

TEST_CASE("an empty state gives an empty snapshot", "[model]")
{
    Snapshot s = snapshot(RawBuilder{}, 30);
    CHECK(s.processes.empty());
    CHECK(s.totals.acquired == 0);
    CHECK(s.totals.active == 0);
    CHECK(s.totals.leaks == 0);
    CHECK(s.totals.leak_ratio == 0.0);
    CHECK(s.wall_time_s == 1795723200);
    CHECK(s.leak_after_s == 30.0);
}

TEST_CASE("processes are listed by pid and totals are summed over them", "[model]")
{
    RawBuilder b;
    b.process(300, "worker", 7, 7).process(100, "api", 10, 6).process(200, "batch", 4, 1);
    b.stats(100).pings = 3;
    b.stats(100).resets = 2;
    b.stats(100).released_untracked = 5;
    b.conn(100, 0xa1, 0x10, 40 * kSec)
        .conn(100, 0xa2, 0x10, 50 * kSec)
        .conn(100, 0xa3, 0x10, 1 * kSec)
        .conn(100, 0xa4, 0x10, 2 * kSec);
    b.conn(200, 0xb1, 0x20, 31 * kSec).conn(200, 0xb2, 0x20, 29 * kSec).conn(200, 0xb3, 0x20, 90 * kSec);

    Snapshot s = snapshot(b, 30);
    REQUIRE(s.processes.size() == 3);
    CHECK(s.processes[0].pid == 100);
    CHECK(s.processes[1].pid == 200);
    CHECK(s.processes[2].pid == 300);

    const ProcessReport& api = proc(s, 100);
    CHECK(api.comm == "api");
    CHECK_FALSE(api.exited);
    CHECK(api.acquired == 10);
    CHECK(api.released == 6);
    CHECK(api.released_untracked == 5);
    CHECK(api.pings == 3);
    CHECK(api.resets == 2);
    CHECK(api.active == 4);
    CHECK(api.leaks == 2);

    CHECK(proc(s, 200).active == 3);
    CHECK(proc(s, 200).leaks == 2);
    CHECK(proc(s, 300).active == 0);
    CHECK(proc(s, 300).leaks == 0);

    CHECK(s.totals.acquired == 21);
    CHECK(s.totals.released == 14);
    CHECK(s.totals.active == 7);
    CHECK(s.totals.leaks == 4);
    CHECK(s.totals.leaked_at_exit == 0);
    CHECK(s.totals.dropped == 0);
    CHECK(s.totals.leak_ratio == Approx(100.0 * 4 / 21));
}

TEST_CASE("active is the number of live handles, not acquired - released", "[model]")
{
    SECTION("handles the live map had no room for are not active")
    {
        RawBuilder b;
        b.process(1, "app", 10, 4);
        b.stats(1).dropped_conns = 3;
        b.conn(1, 0x1, 0x10, kSec).conn(1, 0x2, 0x10, kSec).conn(1, 0x3, 0x10, kSec);
        const ProcessReport p = snapshot(b).processes.at(0);
        CHECK(p.active == 3);
        CHECK(p.dropped == 3);
    }
    SECTION("released_untracked does not lower active")
    {
        RawBuilder b;
        b.process(1, "app", 2, 0);
        b.stats(1).released_untracked = 5;
        b.conn(1, 0x1, 0x10, kSec).conn(1, 0x2, 0x10, kSec);
        Snapshot s = snapshot(b, 0);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.released_untracked == 5);
        CHECK(p.active == 2);
        CHECK(p.leaks == 2);
        CHECK(s.totals.active == 2);
    }
    SECTION("released_inherited (a parent's handle finished in its child) does not lower active")
    {
        RawBuilder b;
        b.process(1, "child", 1, 0);
        b.stats(1).released_inherited = 2;
        b.stats(1).dropped_inherited = 1;
        b.conn(1, 0x1, 0x10, kSec);
        Snapshot s = snapshot(b, 0);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.released_inherited == 2);
        CHECK(p.released_untracked == 0);
        CHECK(p.active == 1);
        CHECK(p.dropped == 1);  // an inherited handle the map had no room for
    }
    SECTION("more finishes than acquisitions never make active negative")
    {
        // Handles made before attach: finished, never seen acquired.
        RawBuilder b;
        b.process(1, "app", 1, 1);
        b.stats(1).released_untracked = 9;
        Snapshot s = snapshot(b, 0);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.active == 0);
        CHECK(p.leaks == 0);
        CHECK(s.totals.active == 0);
        CHECK(s.totals.leaks == 0);
        CHECK(s.totals.leak_ratio == 0.0);
    }
}

TEST_CASE("leaks are live handles at least leak_after old", "[model]")
{
    // Nine acquired, three released, six live of these ages:
    RawBuilder b;
    b.process(1, "app", 9, 3);
    b.site(1, 0x10, 9, 3);
    b.conn(1, 0x1, 0x10, 0)  // just acquired
        .conn(1, 0x2, 0x10, 10 * kSec)
        .conn(1, 0x3, 0x10, 30 * kSec - 1)  // one nanosecond short of 30 s
        .conn(1, 0x4, 0x10, 30 * kSec)      // exactly 30 s
        .conn(1, 0x5, 0x10, 45 * kSec)
        .conn(1, 0x6, 0x10, 120 * kSec);

    SECTION("leak_after 30: the handle exactly at the threshold leaks, one ns younger does not")
    {
        Snapshot s = snapshot(b, 30);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.active == 6);
        CHECK(p.leaks == 3);
        CHECK_FALSE(conn(p, 0x1).leak);
        CHECK_FALSE(conn(p, 0x2).leak);
        CHECK_FALSE(conn(p, 0x3).leak);
        CHECK(conn(p, 0x4).leak);
        CHECK(conn(p, 0x5).leak);
        CHECK(conn(p, 0x6).leak);
        CHECK(site(p, "site_10").leaks == 3);
        CHECK(site(p, "site_10").active == 6);
        CHECK(s.totals.leaks == 3);
        CHECK(s.totals.leak_ratio == Approx(100.0 * 3 / 9));
    }
    SECTION("leak_after 0: every live handle, i.e. acquired - released when nothing was dropped")
    {
        Snapshot s = snapshot(b, 0);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.leaks == 6);
        CHECK(p.leaks == p.acquired - p.released);
        CHECK(conn(p, 0x1).leak);  // age 0 >= 0
        CHECK(s.totals.leak_ratio == Approx(100.0 * 6 / 9));
    }
    SECTION("leak_after 10: the 10 s handle is exactly at the threshold")
    {
        const ProcessReport p = snapshot(b, 10).processes.at(0);
        CHECK(p.leaks == 5);
        CHECK(conn(p, 0x2).leak);
        CHECK_FALSE(conn(p, 0x1).leak);
    }
    SECTION("leak_after 60: only the 120 s handle")
    {
        const ProcessReport p = snapshot(b, 60).processes.at(0);
        CHECK(p.leaks == 1);
        CHECK(conn(p, 0x6).leak);
        CHECK_FALSE(conn(p, 0x5).leak);
    }
    SECTION("leak_after 120.5: none")
    {
        Snapshot s = snapshot(b, 120.5);
        CHECK(s.processes.at(0).leaks == 0);
        CHECK(s.processes.at(0).active == 6);
        CHECK(s.totals.leak_ratio == 0.0);
        CHECK(s.leak_after_s == 120.5);
    }
}

TEST_CASE("a fractional leak_after is compared to the nanosecond", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 2, 0);
    b.conn(1, 0x1, 0x10, 500 * kMs - 1).conn(1, 0x2, 0x10, 500 * kMs);
    const ProcessReport p = snapshot(b, 0.5).processes.at(0);
    CHECK_FALSE(conn(p, 0x1).leak);
    CHECK(conn(p, 0x2).leak);
    CHECK(p.leaks == 1);
}

TEST_CASE("leak_ratio is leaks / acquired * 100 over all processes", "[model]")
{
    SECTION("nothing acquired gives 0, not NaN")
    {
        RawBuilder b;
        b.process(1, "idle");
        b.stats(1).released_untracked = 2;
        Snapshot s = snapshot(b, 0);
        CHECK(s.totals.acquired == 0);
        CHECK(s.totals.leak_ratio == 0.0);
    }
    SECTION("3 leaks of 8 acquired is 37.5")
    {
        RawBuilder b;
        b.process(1, "app", 8, 5);
        b.conn(1, 0x1, 0x10, 40 * kSec).conn(1, 0x2, 0x10, 40 * kSec).conn(1, 0x3, 0x10, 40 * kSec);
        CHECK(snapshot(b, 30).totals.leak_ratio == 37.5);
    }
    SECTION("summed first, then divided: (1 + 2) / (4 + 6) is 30")
    {
        RawBuilder b;
        b.process(1, "a", 4, 3).process(2, "b", 6, 4);
        b.conn(1, 0x1, 0x10, 31 * kSec);
        b.conn(2, 0x1, 0x10, 31 * kSec).conn(2, 0x2, 0x10, 32 * kSec);
        CHECK(snapshot(b, 30).totals.leak_ratio == 30.0);
    }
}

TEST_CASE("an exited process holds nothing: its live handles leaked at exit", "[model]")
{
    RawBuilder b;
    b.process(7, "batch", 5, 2).exited(7, kNow - 5 * kSec);
    b.site(7, 0x10, 3, 1).site(7, 0x20, 1, 0).site(7, 0x30, 1, 1);
    b.conn(7, 0x1, 0x10, 100 * kSec).conn(7, 0x2, 0x10, 1 * kSec).conn(7, 0x3, 0x20, 40 * kSec);
    b.process(8, "api", 2, 0);
    b.conn(8, 0x1, 0x10, 40 * kSec).conn(8, 0x2, 0x10, 1 * kSec);

    for (double leak_after : {0.0, 30.0}) {
        INFO("leak_after " << leak_after);
        Snapshot s = snapshot(b, leak_after);
        const ProcessReport& p = proc(s, 7);
        CHECK(p.exited);
        CHECK(p.active == 0);
        CHECK(p.leaks == 0);
        CHECK(p.leaked_at_exit == 3);
        CHECK(p.connections.empty());
        CHECK(site(p, "site_10").leaked_at_exit == 2);
        CHECK(site(p, "site_10").active == 0);
        CHECK(site(p, "site_10").leaks == 0);
        CHECK(site(p, "site_20").leaked_at_exit == 1);
        CHECK(site(p, "site_30").leaked_at_exit == 0);

        const ProcessReport& live = proc(s, 8);
        CHECK_FALSE(live.exited);
        CHECK(live.leaked_at_exit == 0);
        CHECK(live.active == 2);

        CHECK(s.totals.active == 2);
        CHECK(s.totals.leaked_at_exit == 3);
        CHECK(s.totals.leaks == (leak_after == 0 ? 2u : 1u));
        CHECK(s.totals.acquired == 7);
    }
}

TEST_CASE("an exited process whose handle's site entry was dropped still counts it leaked at exit", "[model]")
{
    RawBuilder b;
    b.process(7, "batch", 2, 0).exited(7);
    b.site(7, 0x10, 1, 0);
    b.conn(7, 0x1, 0x10, kSec).conn(7, 0x2, 0x99, kSec);  // no site entry for 0x99
    const ProcessReport p = snapshot(b).processes.at(0);
    CHECK(p.leaked_at_exit == 2);
    CHECK(site(p, "site_10").leaked_at_exit == 1);
}

TEST_CASE("dropped is the sum of the four dropped_* counters", "[model]")
{
    RawBuilder b;
    b.process(1, "a").process(2, "b").process(3, "c");
    b.stats(1).dropped_conns = 1;
    b.stats(1).dropped_sites = 2;
    b.stats(1).dropped_threads = 4;
    b.stats(1).dropped_children = 8;
    b.stats(2).dropped_children = 100;
    Snapshot s = snapshot(b);
    CHECK(proc(s, 1).dropped == 15);
    CHECK(proc(s, 2).dropped == 100);
    CHECK(proc(s, 3).dropped == 0);
    CHECK(s.totals.dropped == 115);
}

TEST_CASE("sites of a live process are listed worst first", "[model]")
{
    // Names sort the other way round from the addresses, so a tie broken by
    // address would show.
    TestNamer namer;
    namer.names = {{0x1, "h"}, {0x2, "g"}, {0x3, "f"}, {0x4, "e"}, {0x5, "d"}, {0x6, "c"}, {0x7, "b"}, {0x8, "a"}};
    RawBuilder b;
    b.process(1, "app", 300, 200);
    b.site(1, 0x1, 1).conn(1, 0x101, 0x1, 40 * kSec);                                 // 1 leak, 1 active
    b.site(1, 0x2, 2).conn(1, 0x201, 0x2, 40 * kSec).conn(1, 0x202, 0x2, 50 * kSec);  // 2 leaks
    b.site(1, 0x3, 3)                                                                 // 1 leak, 3 active
        .conn(1, 0x301, 0x3, 40 * kSec)
        .conn(1, 0x302, 0x3, kSec)
        .conn(1, 0x303, 0x3, kSec);
    b.site(1, 0x4, 50, 49).conn(1, 0x401, 0x4, kSec);  // 1 active, 50 acquired
    b.site(1, 0x5, 60, 59).conn(1, 0x501, 0x5, kSec);  // 1 active, 60 acquired
    b.site(1, 0x6, 100, 100);                          // busy but all released
    b.site(1, 0x7, 5, 5);                              // tie with 0x8 ...
    b.site(1, 0x8, 5, 5);                              // ... "a" before "b"

    const ProcessReport p = snapshot(b, 30, 10, namer).processes.at(0);
    CHECK(site_names(p) == std::vector<std::string>{"g", "f", "h", "d", "e", "c", "a", "b"});
    CHECK(site(p, "g").leaks == 2);
    CHECK(site(p, "f").leaks == 1);
    CHECK(site(p, "f").active == 3);
    CHECK(site(p, "f").acquired == 3);
    CHECK(site(p, "d").acquired == 60);
    CHECK(site(p, "d").released == 59);
    CHECK(site(p, "d").active == 1);
    CHECK(site(p, "c").active == 0);
}

TEST_CASE("sites of an exited process are listed by handles leaked at exit first", "[model]")
{
    RawBuilder b;
    b.process(1, "batch", 603, 600).exited(1);
    b.site(1, 0x1, 100, 99).conn(1, 0x101, 0x1, kSec);                         // 1 at exit
    b.site(1, 0x2, 2, 0).conn(1, 0x201, 0x2, kSec).conn(1, 0x202, 0x2, kSec);  // 2 at exit
    b.site(1, 0x3, 500, 500);                                                  // none
    b.site(1, 0x4, 1, 1);                                                      // none, fewer
    const ProcessReport p = snapshot(b).processes.at(0);
    CHECK(site_names(p) == std::vector<std::string>{"site_2", "site_1", "site_3", "site_4"});
}

TEST_CASE("only the top_sites worst sites are listed", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 15, 10);
    for (uint64_t i = 1; i <= 5; i++)
        b.site(1, i, i, i - 1).conn(1, 0x100 * i, i, i * 20 * kSec);  // site i: one handle, i*20 s old

    SECTION("top 2")
    {
        const ProcessReport p = snapshot(b, 30, 2).processes.at(0);
        CHECK(site_names(p) == std::vector<std::string>{"site_5", "site_4"});
        // The process counts everything, listed or not.
        CHECK(p.active == 5);
        CHECK(p.leaks == 4);
        // A handle of a site cut from the list still has its site's name.
        CHECK(conn(p, 0x100).site == "site_1");
        CHECK(p.connections.size() == 5);
    }
    SECTION("top 1")
    {
        CHECK(site_names(snapshot(b, 30, 1).processes.at(0)) == std::vector<std::string>{"site_5"});
    }
    SECTION("more room than sites lists them all")
    {
        CHECK(snapshot(b, 30, 10).processes.at(0).sites.size() == 5);
        CHECK(snapshot(b, 30, 5).processes.at(0).sites.size() == 5);
    }
}

TEST_CASE("connections are listed oldest first, ties by address", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 5, 0);
    b.site(1, 0x10, 5);
    b.conn(1, 0x5000, 0x10, 5 * kSec, 11)
        .conn(1, 0x3000, 0x10, 50 * kSec, 12)
        .conn(1, 0x4000, 0x10, 1 * kSec, 13)
        .conn(1, 0x2000, 0x10, 5 * kSec, 14)
        .conn(1, 0x1000, 0x10, 1500 * kMs + 250'000, 15);  // 1500.25 ms
    const ProcessReport p = snapshot(b, 30).processes.at(0);
    CHECK(conn_order(p) == std::vector<uint64_t>{0x3000, 0x2000, 0x5000, 0x1000, 0x4000});
    const ConnReport& oldest = p.connections.at(0);
    CHECK(oldest.conn == 0x3000);
    CHECK(oldest.tid == 12);
    CHECK(oldest.site == "site_10");
    CHECK(oldest.age_ms == 50000.0);
    CHECK(oldest.leak);
    CHECK(conn(p, 0x1000).age_ms == 1500.25);
    CHECK(conn(p, 0x1000).tid == 15);
    CHECK_FALSE(conn(p, 0x1000).leak);
}

TEST_CASE("avg_ms is the mean hold of released handles, max_ms the longest hold or live age", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 20, 8);
    // 4 released holding 3 s in all, the longest 1.5 s
    b.site(1, 0x1, 4, 4, 3 * kSec, 1500 * kMs);
    // same, plus a live handle 2 s old: longer than any released one
    b.site(1, 0x2, 5, 4, 3 * kSec, 1500 * kMs).conn(1, 0x21, 0x2, 2 * kSec);
    // same, plus a live handle 1 s old: the released 1.5 s stays the longest
    b.site(1, 0x3, 5, 4, 3 * kSec, 1500 * kMs).conn(1, 0x31, 0x3, 1 * kSec);
    // nothing released yet, one live handle 7.25 s old
    b.site(1, 0x4, 1, 0).conn(1, 0x41, 0x4, 7250 * kMs);
    // one released in 0.25 ms
    b.site(1, 0x5, 1, 1, 250'000, 250'000);

    const ProcessReport p = snapshot(b, 30).processes.at(0);
    CHECK(site(p, "site_1").avg_ms == 750.0);
    CHECK(site(p, "site_1").max_ms == 1500.0);
    CHECK(site(p, "site_2").avg_ms == 750.0);
    CHECK(site(p, "site_2").max_ms == 2000.0);
    CHECK(site(p, "site_3").avg_ms == 750.0);
    CHECK(site(p, "site_3").max_ms == 1500.0);
    CHECK(site(p, "site_4").avg_ms == 0.0);
    CHECK(site(p, "site_4").max_ms == 7250.0);
    CHECK(site(p, "site_5").avg_ms == 0.25);
    CHECK(site(p, "site_5").max_ms == 0.25);
}

TEST_CASE("a handle whose site has no site entry is still named through the namer", "[model]")
{
    std::vector<RawSite> seen;
    TestNamer namer;
    namer.seen = &seen;
    RawBuilder b;
    b.process(42, "app", 2, 0);
    b.stats(42).dropped_sites = 1;
    b.site(42, 0x10, 1);
    b.conn(42, 0x1, 0x10, kSec).conn(42, 0x2, 0xdead, kSec);

    const ProcessReport p = snapshot(b, 30, 10, namer).processes.at(0);
    CHECK(conn(p, 0x2).site == "site_dead");
    CHECK(conn(p, 0x1).site == "site_10");
    CHECK(p.active == 2);

    // The namer was asked about the missing site by pid and address.
    bool asked = false;
    for (const RawSite& s : seen)
        if (s.site == connleak::SiteKey::caller(0xdead)) {
            asked = true;
            CHECK(s.pid == 42);
            CHECK(s.stats.acquired == 0);
        }
    CHECK(asked);
}

TEST_CASE("a handle acquired after the clock was read has age 0", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 2, 0);
    b.site(1, 0x10, 2);
    b.conn_acquired_at(1, 0x1, 0x10, kNow + 5 * kSec).conn(1, 0x2, 0x10, 3 * kSec);

    SECTION("leak_after 30")
    {
        const ProcessReport p = snapshot(b, 30).processes.at(0);
        CHECK(conn(p, 0x1).age_ms == 0.0);
        CHECK_FALSE(conn(p, 0x1).leak);
        CHECK(p.active == 2);
        CHECK(p.leaks == 0);
        CHECK(site(p, "site_10").max_ms == 3000.0);
        // the youngest (age 0) comes last
        CHECK(conn_order(p) == std::vector<uint64_t>{0x2, 0x1});
    }
    SECTION("leak_after 0 counts it as a live handle, so a leak")
    {
        const ProcessReport p = snapshot(b, 0).processes.at(0);
        CHECK(conn(p, 0x1).leak);
        CHECK(p.leaks == 2);
    }
}

TEST_CASE("handles and sites of processes not traced are ignored", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 1, 0);
    b.conn(1, 0x1, 0x10, 40 * kSec);
    b.conn(999, 0x2, 0x10, 40 * kSec);
    b.site(999, 0x10, 1);
    Snapshot s = snapshot(b, 30);
    REQUIRE(s.processes.size() == 1);
    CHECK(s.processes[0].sites.empty());
    CHECK(s.totals.active == 1);
    CHECK(s.totals.leaks == 1);
}

TEST_CASE("sites are per process: the same address in two processes is two sites", "[model]")
{
    RawBuilder b;
    b.process(1, "a", 3, 0).process(2, "b", 1, 1);
    b.site(1, 0x10, 3).site(2, 0x10, 1, 1, 5 * kMs, 5 * kMs);
    b.conn(1, 0x1, 0x10, 40 * kSec).conn(1, 0x2, 0x10, 40 * kSec).conn(1, 0x3, 0x10, kSec);
    Snapshot s = snapshot(b, 30);
    const SiteReport& a = site(proc(s, 1), "site_10");
    const SiteReport& c = site(proc(s, 2), "site_10");
    CHECK(a.acquired == 3);
    CHECK(a.active == 3);
    CHECK(a.leaks == 2);
    CHECK(c.acquired == 1);
    CHECK(c.released == 1);
    CHECK(c.active == 0);
    CHECK(c.avg_ms == 5.0);
}

// (A bug in the version first tested: leak_after_ns was
// static_cast<uint64_t>(leak_after_s * 1e9), undefined beyond ~1.85e10 s and
// 0 on x86-64, so "--leak-after 1e11" made every live handle a leak. Fixed in
// f6e0f2f; kept as a regression test.)
TEST_CASE("a leak_after too large for nanoseconds in 64 bits means no leaks", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 2, 0);
    b.conn(1, 0x1, 0x10, 1).conn(1, 0x2, 0x10, 120 * kSec);
    for (double leak_after : {1e10, 1e11, 1e12}) {
        INFO("leak_after " << leak_after);
        Snapshot s = snapshot(b, leak_after);
        const ProcessReport& p = s.processes.at(0);
        CHECK(p.active == 2);
        CHECK(p.leaks == 0);
        CHECK_FALSE(conn(p, 0x1).leak);
        CHECK(s.totals.leak_ratio == 0.0);
    }
}

TEST_CASE("a caller site and a stack with the same number are different sites", "[model]")
{
    // StackTable numbers its stacks from 0; the kernel's sites are return
    // addresses. The key's kind keeps them apart, whatever the numbers.
    RawBuilder b;
    b.process(1, "app", 7);
    b.site(1, 0x1, 2, 1).conn(1, 0x101, 0x1, kSec);
    RawState raw = b.raw();
    RawSite stack;
    stack.pid = 1;
    stack.site = connleak::SiteKey::stack(0x1);
    stack.stats.acquired = 5;
    raw.sites.push_back(stack);
    RawConn c = raw.conns.back();
    c.conn = 0x102;
    c.site = connleak::SiteKey::stack(0x1);
    raw.conns.push_back(c);

    const ProcessReport p =
        build_snapshot(raw, ModelOptions{}, [](const RawSite& s) {
            return std::string(s.site.kind == connleak::SiteKey::Kind::stack ? "stack_" : "caller_") +
                   std::to_string(s.site.value);
        }).processes.at(0);
    REQUIRE(p.sites.size() == 2);
    CHECK(site(p, "stack_1").acquired == 5);
    CHECK(site(p, "stack_1").active == 1);
    CHECK(site(p, "caller_1").acquired == 2);
    CHECK(site(p, "caller_1").active == 1);
    CHECK(conn(p, 0x102).site == "stack_1");
    CHECK(conn(p, 0x101).site == "caller_1");
}

TEST_CASE("fold_exited sums processes and their sites by name")
{
    ProcessReport a, b;
    a.comm = "w";
    a.acquired = 3;
    a.released = 2;
    a.leaked_at_exit = 1;
    a.released_inherited = 2;
    a.sites.push_back({"f", 3, 2, 0, 0, 1, 10.0, 20.0, nullptr, {}, 0});
    b.comm = "w";
    b.acquired = 1;
    b.released = 1;
    b.released_inherited = 1;
    b.sites.push_back({"f", 1, 1, 0, 0, 0, 40.0, 40.0, nullptr, {}, 0});
    b.sites.push_back({"g", 0, 0, 0, 0, 0, 0, 0, nullptr, {}, 0});
    connleak::ExitedGroup g;
    connleak::fold_exited(g, a);
    connleak::fold_exited(g, b);
    CHECK(g.comm == "w");
    CHECK(g.processes == 2);
    CHECK(g.acquired == 4);
    CHECK(g.released == 3);
    CHECK(g.leaked_at_exit == 1);
    CHECK(g.released_inherited == 3);
    REQUIRE(g.sites.size() == 2);
    CHECK(g.sites[0].site == "f");
    CHECK(g.sites[0].acquired == 4);
    CHECK(g.sites[0].released == 3);
    CHECK(g.sites[0].avg_ms == Approx(20.0));  // (10 * 2 + 40 * 1) / 3
    CHECK(g.sites[0].max_ms == 40.0);
}

TEST_CASE("folded exited processes count in the totals")
{
    RawState raw;
    connleak::ExitedGroup g;
    g.comm = "w";
    g.processes = 5;
    g.acquired = 7;
    g.released = 6;
    g.leaked_at_exit = 1;
    raw.exited_folded.push_back(g);
    Snapshot s = build_snapshot(raw, ModelOptions{}, [](const RawSite&) { return std::string("x"); });
    CHECK(s.totals.acquired == 7);
    CHECK(s.totals.released == 6);
    CHECK(s.totals.leaked_at_exit == 1);
    CHECK(s.exited_folded_processes == 5);
    REQUIRE(s.exited_folded.size() == 1);
}

TEST_CASE("each live handle carries its socket from the process's socket report", "[model]")
{
    RawBuilder b;
    b.process(1, "app", 3, 0).site(1, 0x10, 3);
    b.conn(1, 0x1000, 0x10, 3 * kSec).conn(1, 0x2000, 0x10, 2 * kSec).conn(1, 0x3000, 0x10, 1 * kSec);
    RawState raw = b.raw();
    raw.sockets_tracked = true;
    connleak::ProcessSocketReport& sockets = raw.sockets[1];
    sockets.tracked = true;
    sockets.conns[0x1000] = {"127.0.0.1:5432", "open", *connleak::parse_db_host("127.0.0.1:40112"), 77};
    sockets.conns[0x2000] = {"/run/postgresql/.s.PGSQL.5432", "peer_closed", connleak::Peer(), 78};
    // 0x3000: acquired after the socket read: not in the report yet

    const ProcessReport p = build_snapshot(raw, ModelOptions{}, TestNamer{}).processes.at(0);
    const ConnReport& tcp = conn(p, 0x1000);
    CHECK(tcp.peer == "127.0.0.1:5432");
    CHECK(tcp.local.str() == "127.0.0.1:40112");
    CHECK(tcp.socket == "open");
    CHECK(tcp.socket_inode == 77);
    const ConnReport& unix_conn = conn(p, 0x2000);
    CHECK(unix_conn.peer == "/run/postgresql/.s.PGSQL.5432");
    CHECK(unix_conn.local.kind() == connleak::Peer::Kind::None);
    CHECK(unix_conn.socket == "peer_closed");
    CHECK(unix_conn.socket_inode == 78);
    const ConnReport& unseen = conn(p, 0x3000);
    CHECK(unseen.peer.empty());
    CHECK(unseen.socket == "none");
    CHECK(unseen.socket_inode == 0);

    // Sockets not tracked (--no-sockets): no socket state at all.
    const ProcessReport q = snapshot(b).processes.at(0);
    CHECK(conn(q, 0x1000).peer.empty());
    CHECK(conn(q, 0x1000).socket.empty());
    CHECK(conn(q, 0x1000).socket_inode == 0);
}
