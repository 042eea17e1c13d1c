// Trends: per (pid, site) movement of active between reports, the numbers
// that tell a leak (climbing) from a pool (flat) in the live view.
#include <catch2/catch.hpp>
#include <initializer_list>
#include <string>

#include "trends.h"

using connleak::Direction;
using connleak::ProcessReport;
using connleak::SiteReport;
using connleak::Snapshot;
using connleak::Trend;
using connleak::Trends;

namespace {

SiteReport site(const std::string& name, uint64_t active)
{
    SiteReport s;
    s.site = name;
    s.active = active;
    return s;
}

// One report: process pid with the given sites, totals.active their sum.
Snapshot report(uint32_t pid, std::initializer_list<SiteReport> sites)
{
    Snapshot snap;
    ProcessReport p;
    p.pid = pid;
    for (const SiteReport& s : sites) {
        p.sites.push_back(s);
        p.active += s.active;
    }
    snap.totals.active = p.active;
    snap.processes.push_back(p);
    return snap;
}

// Feeds one site's active values, one report each.
Trend feed(Trends& t, std::initializer_list<uint64_t> values)
{
    for (uint64_t v : values)
        t.record(report(1, {site("s", v)}));
    return t.site(1, "s");
}

}  // namespace

TEST_CASE("a site never seen has no trend", "[trends]")
{
    Trends t;
    Trend tr = t.site(1, "nowhere");
    CHECK(tr.samples == 0);
    CHECK(tr.direction == Direction::New);
    CHECK(tr.since_last == 0);
    CHECK(tr.since_first == 0);
}

TEST_CASE("the first report of a process is the baseline", "[trends]")
{
    Trends t;
    Trend tr = feed(t, {7});
    CHECK(tr.samples == 1);
    CHECK(tr.direction == Direction::New);
    CHECK(tr.since_last == 0);
    CHECK(tr.since_first == 0);
}

TEST_CASE("a leaking site climbs", "[trends]")
{
    Trends t;
    Trend tr = feed(t, {1, 2, 3, 5});
    CHECK(tr.since_last == 2);
    CHECK(tr.since_first == 4);
    CHECK(tr.samples == 4);
    CHECK(tr.direction == Direction::Up);
}

TEST_CASE("a pool's site stays flat", "[trends]")
{
    Trends t;
    Trend tr = feed(t, {5, 5, 5, 5, 5});
    CHECK(tr.since_last == 0);
    CHECK(tr.since_first == 0);
    CHECK(tr.direction == Direction::Flat);
}

TEST_CASE("a busy pool going up and down is flat, not climbing", "[trends]")
{
    Trends t;
    Trend tr = feed(t, {3, 4, 3, 5, 4, 3, 4, 3});
    CHECK(tr.direction == Direction::Flat);
    CHECK(tr.since_last == -1);
    CHECK(tr.since_first == 0);
}

TEST_CASE("short-lived handles caught in flight stay flat", "[trends]")
{
    Trends t;
    CHECK(feed(t, {0, 1, 0, 0, 0, 0, 0, 0, 0, 0}).direction == Direction::Flat);
    CHECK(feed(t, {1}).direction == Direction::Flat);
}

TEST_CASE("a slow leak is still climbing between its steps", "[trends]")
{
    // One more leaked handle every third report: its floor keeps rising.
    Trends t;
    Trend tr = feed(t, {1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4});
    CHECK(tr.since_last == 0);
    CHECK(tr.since_first == 3);
    CHECK(tr.direction == Direction::Up);
}

TEST_CASE("a draining site goes down", "[trends]")
{
    Trends t;
    Trend tr = feed(t, {6, 5, 3, 1});
    CHECK(tr.direction == Direction::Down);
    CHECK(tr.since_last == -2);
    CHECK(tr.since_first == -5);
}

TEST_CASE("a rise long ago falls out of the window", "[trends]")
{
    Trends t;
    feed(t, {0, 4});
    CHECK(t.site(1, "s").direction == Direction::Up);
    for (size_t i = 0; i < Trends::kWindow; i++)
        t.record(report(1, {site("s", 4)}));
    Trend tr = t.site(1, "s");
    CHECK(tr.direction == Direction::Flat);
    CHECK(tr.since_first == 4);  // the session still remembers
    CHECK(tr.samples == Trends::kWindow + 2);
}

TEST_CASE("a site appearing in a process already seen starts from zero", "[trends]")
{
    Trends t;
    t.record(report(1, {site("old", 2)}));
    t.record(report(1, {site("old", 2), site("new", 4)}));
    Trend tr = t.site(1, "new");
    CHECK(tr.since_last == 4);
    CHECK(tr.since_first == 4);
    CHECK(tr.samples == 2);
    CHECK(tr.direction == Direction::Up);
    CHECK(t.site(1, "old").direction == Direction::Flat);
}

TEST_CASE("a site missing from a report keeps its history", "[trends]")
{
    // Out of the top sites for a while: compared with when it was last listed.
    Trends t;
    t.record(report(1, {site("s", 2)}));
    t.record(report(1, {site("other", 9)}));
    t.record(report(1, {site("s", 5)}));
    Trend tr = t.site(1, "s");
    CHECK(tr.samples == 2);
    CHECK(tr.since_last == 3);
}

TEST_CASE("the same site in two processes is two histories", "[trends]")
{
    Trends t;
    Snapshot a = report(1, {site("s", 1)});
    a.processes.push_back(report(2, {site("s", 5)}).processes[0]);
    Snapshot b = report(1, {site("s", 3)});
    b.processes.push_back(report(2, {site("s", 5)}).processes[0]);
    t.record(a);
    t.record(b);
    CHECK(t.site(1, "s").since_last == 2);
    CHECK(t.site(1, "s").direction == Direction::Up);
    CHECK(t.site(2, "s").since_last == 0);
    CHECK(t.site(2, "s").direction == Direction::Flat);
}

TEST_CASE("the total follows totals.active", "[trends]")
{
    Trends t;
    CHECK(t.total().samples == 0);
    t.record(report(1, {site("a", 1), site("b", 2)}));
    t.record(report(1, {site("a", 4), site("b", 2)}));
    Trend tr = t.total();
    CHECK(tr.samples == 2);
    CHECK(tr.since_last == 3);
    CHECK(tr.since_first == 3);
    CHECK(tr.direction == Direction::Up);
}
