// Handle state in the model: pooled handles leak only when borrowed and
// kept in a transaction; counts by state; the released notice when a
// pooled handle comes back; pool slots lost; the JSON keys and notice text.
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "json_output.h"
#include "leak_notices.h"
#include "model.h"
#include "notices_text.h"
#include "pool_slots.h"
#include "text_report.h"

using namespace connleak;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kNow = 10'000 * kSec;
constexpr uint32_t kPid = 4242;

const Frames kPoolStack = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{
    "leaky_route (/srv/app.py:12)", "getconn (/usr/lib/python3/dist-packages/psycopg2/pool.py:174)"});
const Frames kPlainStack =
    std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"plain_route (/srv/app.py:30)"});
const Frames kOwnPoolStack = std::make_shared<const std::vector<std::string>>(
    std::vector<std::string>{"handler (/srv/app.py:40)", "take (/srv/mypool/core.py:9)"});

struct Handle {
    uint64_t conn;
    uint64_t site;  // 1: through psycopg2.pool, 2: plain, 3: through /srv/mypool
    uint64_t age_s;
    ConnState state;
    uint64_t in_state_s;
    bool read = true;
};

RawState raw_of(const std::vector<Handle>& handles, uint64_t now = kNow, bool exited = false)
{
    RawState raw;
    raw.now_ns = now;
    raw.wall_time_s = 1795723200;
    RawProcess p;
    p.pid = kPid;
    p.comm = "app";
    p.stats.acquired = handles.size();
    if (exited)
        p.stats.exited_ns = now - kSec;
    raw.processes.push_back(p);
    for (uint64_t s = 1; s <= 3; ++s) {
        RawSite site;
        site.pid = kPid;
        site.site = SiteKey::caller(s);
        raw.sites.push_back(site);
    }
    for (const Handle& h : handles) {
        RawConn c;
        c.pid = kPid;
        c.conn = h.conn;
        c.info.acquired_ns = now - h.age_s * kSec;
        c.info.tid = kPid;
        c.site = SiteKey::caller(h.site);
        raw.conns.push_back(c);
        if (h.read) {
            HandleState st;
            st.state = h.state;
            st.backend_pid = static_cast<int32_t>(1000 + h.conn);
            st.database = "shop";
            st.user = "app";
            st.state_since_ns = now - h.in_state_s * kSec;
            raw.handles[{kPid, h.conn}] = st;
        }
    }
    return raw;
}

Snapshot build(const RawState& raw, double leak_after_s = 30, std::vector<std::string> extra_pools = {})
{
    ModelOptions opts;
    opts.leak_after_s = leak_after_s;
    opts.pool_frames.insert(opts.pool_frames.end(), extra_pools.begin(), extra_pools.end());
    return build_snapshot(
        raw, opts,
        [](const RawSite& s) {
            return s.site.value == 1   ? "leaky_route (/srv/app.py:12)"
                   : s.site.value == 2 ? "plain_route (/srv/app.py:30)"
                                       : "handler (/srv/app.py:40)";
        },
        [](const RawSite& s) {
            return s.site.value == 1 ? kPoolStack : s.site.value == 2 ? kPlainStack : kOwnPoolStack;
        });
}

const ConnReport& conn_of(const Snapshot& snap, uint64_t conn)
{
    for (const ConnReport& c : snap.processes.at(0).connections)
        if (c.conn == conn)
            return c;
    FAIL("no connection " << conn);
    throw;
}

const SiteReport& site_of(const Snapshot& snap, const std::string& prefix)
{
    for (const SiteReport& s : snap.processes.at(0).sites)
        if (s.site.rfind(prefix, 0) == 0)
            return s;
    FAIL("no site " << prefix);
    throw;
}

}  // namespace

TEST_CASE("pool model: a pooled handle leaks when kept in a transaction, never when idle in its pool")
{
    const Snapshot snap = build(raw_of({
        {1, 1, 100, ConnState::in_transaction, 40},  // borrowed, kept 40 s: leak
        {2, 1, 100, ConnState::in_error, 31},        // failed transaction left: leak
        {3, 1, 100, ConnState::in_transaction, 5},   // borrowed 5 s ago: not yet
        {4, 1, 100, ConnState::idle, 100},           // in the pool: healthy
        {5, 1, 100, ConnState::idle, 100},
        {6, 2, 100, ConnState::idle, 100},          // not pooled: today's rule (held 100 s)
        {7, 2, 10, ConnState::in_transaction, 10},  // not pooled, 10 s: not yet
    }));
    const ProcessReport& p = snap.processes.at(0);
    CHECK(p.active == 7);
    CHECK(p.leaks == 3);
    CHECK(conn_of(snap, 1).leak);
    CHECK(conn_of(snap, 2).leak);
    CHECK_FALSE(conn_of(snap, 3).leak);
    CHECK_FALSE(conn_of(snap, 4).leak);
    CHECK(conn_of(snap, 6).leak);
    CHECK_FALSE(conn_of(snap, 7).leak);
    CHECK(conn_of(snap, 1).pooled);
    CHECK_FALSE(conn_of(snap, 6).pooled);
    CHECK(conn_of(snap, 1).backend_pid == 1001);
    CHECK(conn_of(snap, 1).database == "shop");
    CHECK(conn_of(snap, 1).state_ms == Approx(40000));

    const SiteReport& pooled = site_of(snap, "leaky_route");
    CHECK(pooled.leaks == 2);
    CHECK(pooled.active == 5);
    CHECK(pooled.states == std::map<std::string, uint64_t>{{"idle", 2}, {"in_error", 1}, {"in_transaction", 2}});
    CHECK(p.states == std::map<std::string, uint64_t>{{"idle", 3}, {"in_error", 1}, {"in_transaction", 3}});
    CHECK(snap.totals.leaks == 3);
}

TEST_CASE("pool model: a pooled handle whose state could not be read keeps today's rule")
{
    Handle unread{1, 1, 100, ConnState::unknown, 0};
    unread.read = false;
    const Snapshot snap = build(raw_of({unread}));
    CHECK(conn_of(snap, 1).pooled);
    CHECK_FALSE(conn_of(snap, 1).state_known);
    CHECK(conn_of(snap, 1).leak);
    CHECK(snap.processes.at(0).states.empty());
}

TEST_CASE("pool model: --pool-frame names a pool of one's own")
{
    const RawState raw = raw_of({{1, 3, 100, ConnState::idle, 100}});
    CHECK_FALSE(conn_of(build(raw), 1).pooled);
    CHECK(conn_of(build(raw), 1).leak);
    const Snapshot own = build(raw, 30, {R"(/mypool/core\.py:)"});
    CHECK(conn_of(own, 1).pooled);
    CHECK_FALSE(conn_of(own, 1).leak);
}

TEST_CASE("pool model: notices name the borrower and say when the handle is back")
{
    LeakNotices notices;
    auto first = notices.update(build(raw_of({{1, 1, 100, ConnState::in_transaction, 34}})));
    REQUIRE(first.size() == 1);
    CHECK(first[0].kind == "leak");
    CHECK(first[0].pooled);
    CHECK(first[0].in_transaction_ms == Approx(34000));
    const std::string text = render_notice(first[0], 30, 0);
    CHECK(text ==
          "connleak: leak: pooled connection 0x1 of pid 4242 (app) borrowed by leaky_route (/srv/app.py:12), in a "
          "transaction for 34.0 s, never returned (leak-after 30s)\n");
    // Still in its transaction: nothing new.
    CHECK(notices.update(build(raw_of({{1, 1, 105, ConnState::in_transaction, 39}}, kNow + 5 * kSec))).empty());
    // Given back: idle in the pool again, the same handle still live.
    auto back = notices.update(build(raw_of({{1, 1, 110, ConnState::idle, 1}}, kNow + 10 * kSec)));
    REQUIRE(back.size() == 1);
    CHECK(back[0].kind == "released");
    CHECK(back[0].pooled);
    CHECK(render_notice(back[0], 30, 0).find("borrowed by leaky_route (/srv/app.py:12) is back") != std::string::npos);
    CHECK(notices.reported() == 0);
}

TEST_CASE("pool model: a pooled handle finished while borrowed costs its pool a slot")
{
    PoolSlots slots;
    Snapshot s1 = build(raw_of({{1, 1, 50, ConnState::in_transaction, 5},
                                {2, 1, 50, ConnState::idle, 50},
                                {3, 2, 50, ConnState::in_transaction, 5}}));
    slots.update(s1);
    CHECK(s1.processes.at(0).pool_slots_lost == 0);
    // All three finished: only the pooled one that was borrowed is a slot lost.
    Snapshot s2 = build(raw_of({}, kNow + kSec));
    slots.update(s2);
    CHECK(s2.processes.at(0).pool_slots_lost == 1);
    // Still counted later (sites with no live handle are listed by the kernel's counts).
    Snapshot s3 = build(raw_of({}, kNow + 2 * kSec));
    slots.update(s3);
    CHECK(s3.processes.at(0).pool_slots_lost == 1);
    CHECK(site_of(s3, "leaky_route").pool_slots_lost == 1);
    CHECK(site_of(s3, "plain_route").pool_slots_lost == 0);
}

TEST_CASE("pool model: handles of a process that exited are leaked at exit, not slots lost")
{
    PoolSlots slots;
    Snapshot s1 = build(raw_of({{1, 1, 50, ConnState::in_transaction, 5}}));
    slots.update(s1);
    Snapshot s2 = build(raw_of({}, kNow + kSec, true));
    slots.update(s2);
    CHECK(s2.processes.at(0).pool_slots_lost == 0);
}

TEST_CASE("pool model: JSON keys of DESIGN.md on connections, counts by state on sites and processes")
{
    Handle unread{2, 2, 100, ConnState::unknown, 0};
    unread.read = false;
    const auto j = snapshot_to_json(build(raw_of({{1, 1, 100, ConnState::in_transaction, 40}, unread})));
    const auto& p = j["processes"][0];
    const auto& conns = p["connections"];
    REQUIRE(conns.size() == 2);
    for (const auto& c : conns) {
        if (c["conn"] == "0x1") {
            CHECK(c["state"] == "in_transaction");
            CHECK(c["backend_pid"] == 1001);
            CHECK(c["database"] == "shop");
            CHECK(c["user"] == "app");
            CHECK(c["pooled"] == true);
            CHECK(c["leak"] == true);
        } else {
            CHECK(c["state"].is_null());
            CHECK(c["backend_pid"].is_null());
            CHECK(c["database"].is_null());
            CHECK(c["user"].is_null());
            CHECK(c["pooled"] == false);
        }
    }
    CHECK(p["states"] == nlohmann::ordered_json({{"in_transaction", 1}}));
    CHECK(p["pool_slots_lost"] == 0);
    bool found = false;
    for (const auto& s : p["top_connection_users"])
        if (s["site"] == "leaky_route (/srv/app.py:12)") {
            found = true;
            CHECK(s["states"]["in_transaction"] == 1);
            CHECK(s["pool_slots_lost"] == 0);
        }
    CHECK(found);
}

TEST_CASE("model: a handle leaked at exit keeps its hold in its site's max_ms")
{
    // Held 50 s then 70 s when the process exited 1 s before now: the
    // longest hold is 69 s (acquired 70 s before now), not 0.
    const Snapshot live = build(raw_of({{1, 2, 50, ConnState::idle, 5}, {2, 2, 70, ConnState::idle, 5}}));
    CHECK(site_of(live, "plain_route").max_ms == Approx(70000));
    const Snapshot gone = build(raw_of({{1, 2, 50, ConnState::idle, 5}, {2, 2, 70, ConnState::idle, 5}}, kNow, true));
    const SiteReport& s = site_of(gone, "plain_route");
    CHECK(s.leaked_at_exit == 2);
    CHECK(s.max_ms == Approx(69000));
    // Nothing released there: no mean hold in the text ("-", not 0.0).
    const std::string text = render_text_report(gone);
    const size_t row = text.find("  plain_route (/srv/app.py:30)");
    REQUIRE(row != std::string::npos);
    const std::string line = text.substr(row, text.find('\n', row) - row);
    CHECK(line.find("          -  1 min 09 s") != std::string::npos);
}
