// Session against a fake kernel: processes that exit between two reads of
// the maps, exited processes archived and folded, pids used again.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "report_sink.h"
#include "session.h"
#include "stack_table.h"

using namespace connleak;

namespace {

constexpr uint64_t kSec = 1'000'000'000;

// The kernel's maps and the process table, as plain data. `between` runs
// when the session asks whether a process exists: after its read of the
// maps, where a real process may exit.
struct FakeSource : TraceSource {
    struct Entry {
        RawProcess process;
        std::vector<RawConn> conns;
        std::vector<RawSite> sites;
    };
    std::map<uint32_t, Entry> maps;
    std::set<uint32_t> running;  // pids that exist (zombies included)
    std::map<uint32_t, std::string> comms;
    std::function<void(uint32_t pid)> between;
    uint64_t now_ns = 100 * kSec;

    void consume_events(const EventHandler&) override {}
    RawState read() override
    {
        RawState raw;
        raw.now_ns = now_ns;
        for (auto& [pid, e] : maps) {
            raw.processes.push_back(e.process);
            raw.conns.insert(raw.conns.end(), e.conns.begin(), e.conns.end());
            raw.sites.insert(raw.sites.end(), e.sites.begin(), e.sites.end());
        }
        return raw;
    }
    std::vector<RawProcess> read_processes() override { return read().processes; }
    RawState read_process(uint32_t pid) override
    {
        RawState raw;
        raw.now_ns = now_ns;
        if (auto it = maps.find(pid); it != maps.end()) {
            raw.processes.push_back(it->second.process);
            raw.conns = it->second.conns;
            raw.sites = it->second.sites;
        }
        return raw;
    }
    void forget(const RawState& entries) override
    {
        for (const RawProcess& p : entries.processes)
            maps.erase(p.pid);
    }
    bool process_exists(uint32_t pid) override
    {
        if (between)
            between(pid);
        return running.count(pid) != 0;
    }
    std::string comm(uint32_t pid) override { return comms.count(pid) ? comms[pid] : ""; }
    std::vector<std::tuple<uint32_t, uint64_t, uint64_t>> watched;  // watch_release calls
    void watch_release(uint32_t pid, uint64_t conn, uint64_t acquired_ns) override
    {
        watched.emplace_back(pid, conn, acquired_ns);
    }

    // A running process that made `acquired` connections from `site` and
    // finished `released` of them.
    void start(uint32_t pid, const std::string& comm, uint64_t acquired, uint64_t released, uint64_t site = 0x401000)
    {
        Entry e;
        e.process.pid = pid;
        set_counts(e, acquired, released, site);
        maps[pid] = e;
        running.insert(pid);
        comms[pid] = comm;
    }
    static void set_counts(Entry& e, uint64_t acquired, uint64_t released, uint64_t site)
    {
        const uint32_t pid = e.process.pid;
        e.process.stats.acquired = acquired;
        e.process.stats.released = released;
        e.conns.clear();
        for (uint64_t i = released; i < acquired; i++) {
            RawConn c;
            c.pid = pid;
            c.conn = 0x1000 + i;
            c.site = connleak::SiteKey::caller(site);
            c.info.acquired_ns = 1 * kSec;
            e.conns.push_back(c);
        }
        e.sites.clear();
        if (acquired) {
            RawSite s;
            s.pid = pid;
            s.site = connleak::SiteKey::caller(site);
            s.stats.acquired = acquired;
            s.stats.released = released;
            e.sites.push_back(s);
        }
    }
    // Its last thread exits: the kernel's exit hook marks it and keeps the
    // comm; the pid lingers as a zombie until `reaped`.
    void exit(uint32_t pid, bool reaped = true)
    {
        Entry& e = maps.at(pid);
        e.process.stats.exited_ns = now_ns;
        std::string c = comms[pid];
        e.process.comm = c;  // as Tracer reads it from the kernel's comm
        if (reaped)
            running.erase(pid);
    }
};

struct Fixture {
    FakeSource kernel;
    std::unique_ptr<ReportSink> sink = make_null_sink();
    StackTable stacks;
    SessionConfig cfg;
    Session session{cfg, kernel, *sink, stacks};

    explicit Fixture(size_t keep_exited = 100) : cfg(make_cfg(keep_exited)), session{cfg, kernel, *sink, stacks} {}
    static SessionConfig make_cfg(size_t keep)
    {
        SessionConfig c;
        c.leak_after_s = 1000;
        c.keep_exited = keep;
        return c;
    }
};

const ProcessReport* find(const Snapshot& s, uint32_t pid)
{
    for (const ProcessReport& p : s.processes)
        if (p.pid == pid)
            return &p;
    return nullptr;
}

}  // namespace

TEST_CASE("a process that exits between the two reads is archived with its final counts")
{
    Fixture f;
    f.kernel.start(10, "child", 0, 0);  // read before it connected
    f.kernel.between = [&](uint32_t pid) {
        if (pid != 10 || !f.kernel.running.count(10))
            return;
        // It connects, finishes, exits and is reaped after the maps were read.
        FakeSource::set_counts(f.kernel.maps.at(10), 1, 1, 0x401000);
        f.kernel.exit(10);
    };
    Snapshot s = f.session.snapshot();
    CHECK(s.totals.acquired == 1);
    CHECK(s.totals.released == 1);
    const ProcessReport* p = find(s, 10);
    REQUIRE(p);
    CHECK(p->exited);
    CHECK(p->comm == "child");
    CHECK(f.kernel.maps.empty());  // deleted only after it was kept
    f.kernel.between = nullptr;
    s = f.session.snapshot();
    CHECK(s.totals.acquired == 1);
    CHECK(s.totals.released == 1);
}

TEST_CASE("an exited process is archived, freed in the kernel and reported at every interval")
{
    Fixture f;
    f.kernel.start(20, "worker", 3, 1);
    Snapshot s = f.session.snapshot();
    CHECK(s.totals.active == 2);
    f.kernel.exit(20, false);  // a zombie: kill(pid, 0) still succeeds
    s = f.session.snapshot();
    CHECK(f.kernel.maps.empty());
    for (int i = 0; i < 2; i++) {
        REQUIRE(find(s, 20));
        CHECK(find(s, 20)->exited);
        CHECK(s.totals.acquired == 3);
        CHECK(s.totals.released == 1);
        CHECK(s.totals.active == 0);
        CHECK(s.totals.leaked_at_exit == 2);
        s = f.session.snapshot();
    }
    CHECK(f.session.all_exited());
}

TEST_CASE("a process gone between the reads with no exit seen keeps its latest counts")
{
    Fixture f;
    f.kernel.start(30, "late", 1, 0);
    f.kernel.between = [&](uint32_t pid) {
        if (pid != 30 || !f.kernel.running.count(30))
            return;
        // Gone without the exit hook marking it (it exited while being
        // added): the entry still changed after the first read.
        FakeSource::set_counts(f.kernel.maps.at(30), 2, 2, 0x401000);
        f.kernel.running.erase(30);
    };
    Snapshot s = f.session.snapshot();
    const ProcessReport* p = find(s, 30);
    REQUIRE(p);
    CHECK(p->exited);
    CHECK(p->acquired == 2);
    CHECK(p->released == 2);
    CHECK(p->comm == "?");  // never seen running, no exit hook: no name known
    CHECK(f.kernel.maps.empty());
}

TEST_CASE("a pid used again after its exit: both processes are counted, apart")
{
    Fixture f;
    f.kernel.start(40, "first", 2, 2);
    f.session.snapshot();
    f.kernel.exit(40);
    Snapshot s = f.session.snapshot();
    REQUIRE(find(s, 40));
    CHECK(find(s, 40)->exited);

    f.kernel.start(40, "second", 1, 0);
    s = f.session.snapshot();
    CHECK(s.totals.acquired == 3);
    CHECK(s.totals.released == 2);
    CHECK(s.totals.active == 1);
    REQUIRE(s.processes.size() == 1);
    CHECK(!s.processes[0].exited);
    CHECK(s.processes[0].comm == "second");
    CHECK(s.processes[0].acquired == 1);
    REQUIRE(s.exited_folded.size() == 1);
    CHECK(s.exited_folded[0].comm == "first");
    CHECK(s.exited_folded[0].acquired == 2);
    CHECK(s.exited_folded_processes == 1);

    // The second one exits too: both stay counted.
    f.kernel.exit(40);
    s = f.session.snapshot();
    CHECK(s.totals.acquired == 3);
    CHECK(s.totals.leaked_at_exit == 1);
}

TEST_CASE("older exited processes are folded per comm, totals and sites exact")
{
    Fixture f(2);
    for (uint32_t pid = 100; pid < 110; pid++) {
        f.kernel.start(pid, pid % 2 ? "odd" : "even", 3, 2, pid < 105 ? 0x401000 : 0x402000);
        f.kernel.exit(pid);
    }
    Snapshot s = f.session.snapshot();  // all ten archived at once
    CHECK(s.processes.size() == 10);
    s = f.session.snapshot();  // then all but two folded
    CHECK(s.processes.size() == 2);
    CHECK(s.totals.acquired == 30);
    CHECK(s.totals.released == 20);
    CHECK(s.totals.leaked_at_exit == 10);
    CHECK(s.exited_folded_processes == 8);
    REQUIRE(s.exited_folded.size() == 2);
    const ExitedGroup& even = s.exited_folded[0];
    CHECK(even.comm == "even");
    CHECK(even.processes == 4);  // 100 102 104 106 (108 is listed)
    CHECK(even.acquired == 12);
    CHECK(even.leaked_at_exit == 4);
    REQUIRE(even.sites.size() == 2);
    uint64_t site_acquired = 0;
    for (const SiteReport& sr : even.sites)
        site_acquired += sr.acquired;
    CHECK(site_acquired == 12);
    CHECK(even.sites[0].site == "0x401000");  // 3 processes, worst first
    CHECK(even.sites[0].acquired == 9);
    CHECK(even.sites[0].leaked_at_exit == 3);
    const ExitedGroup& odd = s.exited_folded[1];
    CHECK(odd.comm == "odd");
    CHECK(odd.processes == 4);  // 101 103 105 107 (109 is listed)
    CHECK(find(s, 108));
    CHECK(find(s, 109));
}

TEST_CASE("each leak reported is watched for its release once, as its own process holds it")
{
    FakeSource kernel;
    auto sink = make_null_sink();
    StackTable stacks;
    SessionConfig cfg;
    cfg.leak_after_s = 0;
    Session session{cfg, kernel, *sink, stacks};
    kernel.start(10, "a", 3, 1);  // live: 0x1001, 0x1002
    kernel.start(20, "b", 2, 0);  // live: 0x1000, 0x1001
    session.report(false);
    auto watched = kernel.watched;
    std::sort(watched.begin(), watched.end());
    using W = std::tuple<uint32_t, uint64_t, uint64_t>;
    CHECK(watched ==
          std::vector<W>{W{10, 0x1001, kSec}, W{10, 0x1002, kSec}, W{20, 0x1000, kSec}, W{20, 0x1001, kSec}});
    session.report(false);  // noticed once: not watched again
    CHECK(kernel.watched.size() == 4);
}
