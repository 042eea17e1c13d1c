// Per last user (issue 13): each last user's live handles, pooled ones,
// those checked out of a pool now and its leaks, counted from the model's
// ConnReports; bounded by --top, added up over processes; in the JSON, the
// text report and the live view (its table and the "last user" sort).
#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "dashboard_html.h"
#include "json_output.h"
#include "last_users.h"
#include "model.h"
#include "notices_text.h"
#include "screen_layout.h"
#include "shown_frames.h"
#include "text_report.h"
#include "trends.h"

using namespace connleak;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kNow = 10'000 * kSec;

// Stacks: acquisitions 1 (through psycopg2.pool) and 2 (plain); last users
// 11 leaky_route, 12 failing_route, 13 healthy_route, 14 plain_user.
std::string name_of(const RawSite& s)
{
    if (s.site.kind != SiteKey::Kind::last_use)
        return s.site.value == 1 ? "make_pool (/srv/app.py:5)" : "plain_open (/srv/app.py:30)";
    switch (s.site.value) {
    case 11:
        return "leaky_route (/srv/app.py:12)";
    case 12:
        return "failing_route (/srv/app.py:20)";
    case 13:
        return "healthy_route (/srv/app.py:40)";
    case 15:  // a borrower that also made connections: the same label as acquisition 2
        return "plain_open (/srv/app.py:30)";
    }
    return "plain_user (/srv/app.py:50)";
}

Frames frames_of(const RawSite& s)
{
    std::vector<std::string> f = {name_of(s)};
    if (s.site.kind != SiteKey::Kind::last_use && s.site.value == 1)
        f.push_back("getconn (/usr/lib/python3/dist-packages/psycopg2/pool.py:174)");
    f.push_back("main (/srv/app.py:99)");
    return std::make_shared<const std::vector<std::string>>(f);
}

struct Handle {
    uint64_t conn;
    uint64_t site;  // 1 pooled, 2 plain
    uint64_t age_s;
    ConnState state;
    uint64_t in_state_s;
    uint64_t user;  // last user's stack; 0: none seen
};

void add_process(RawState& raw, uint32_t pid, const std::vector<Handle>& handles)
{
    RawProcess p;
    p.pid = pid;
    p.comm = "app";
    p.stats.acquired = handles.size();
    raw.processes.push_back(p);
    for (uint64_t s = 1; s <= 2; ++s) {
        RawSite site;
        site.pid = pid;
        site.site = SiteKey::caller(s);
        raw.sites.push_back(site);
    }
    for (const Handle& h : handles) {
        RawConn c;
        c.pid = pid;
        c.conn = h.conn;
        c.info.acquired_ns = kNow - h.age_s * kSec;
        c.info.tid = pid;
        c.site = SiteKey::caller(h.site);
        if (h.user) {
            c.last_use = SiteKey::last_use(h.user);
            c.last_use_ns = kNow - h.in_state_s * kSec;
            c.last_use_tid = pid;
        }
        raw.conns.push_back(c);
        HandleState st;
        st.state = h.state;
        st.backend_pid = static_cast<int32_t>(1000 + h.conn);
        st.state_since_ns = kNow - h.in_state_s * kSec;
        raw.handles[{pid, h.conn}] = st;
    }
}

// A psycopg2 pool: 3 checkouts kept in a transaction by leaky_route (and a
// 4th borrowed 5 s ago, not a leak yet), one left in a failed transaction
// by failing_route, healthy_route's 2 back in the pool and 1 running a
// query, one pooled handle nobody used since the attach, and a plain handle
// held 100 s, last used by plain_user.
const std::vector<Handle> kPoolApp = {
    {1, 1, 100, ConnState::in_transaction, 40, 11}, {2, 1, 100, ConnState::in_transaction, 40, 11},
    {3, 1, 100, ConnState::in_transaction, 40, 11}, {4, 1, 100, ConnState::in_transaction, 5, 11},
    {5, 1, 100, ConnState::in_error, 40, 12},       {6, 1, 100, ConnState::idle, 60, 13},
    {7, 1, 100, ConnState::idle, 60, 13},           {8, 1, 100, ConnState::busy, 1, 13},
    {9, 1, 100, ConnState::idle, 100, 0},           {10, 2, 100, ConnState::idle, 70, 14},
};

Snapshot build(const RawState& raw, size_t top = 10)
{
    RawState r = raw;
    r.now_ns = kNow;
    r.wall_time_s = 1795723200;
    ModelOptions opts;
    opts.leak_after_s = 30;
    opts.top_sites = top;
    return build_snapshot(r, opts, name_of, frames_of);
}

struct Counts {
    std::string site;
    uint64_t connections, pooled, checked_out, leaks;
    bool operator==(const Counts& o) const
    {
        return site == o.site && connections == o.connections && pooled == o.pooled && checked_out == o.checked_out &&
               leaks == o.leaks;
    }
};

std::ostream& operator<<(std::ostream& os, const Counts& c)
{
    return os << "{" << c.site << " " << c.connections << " " << c.pooled << " " << c.checked_out << " " << c.leaks
              << "}";
}

std::vector<Counts> counts(const std::vector<LastUserReport>& users)
{
    std::vector<Counts> out;
    for (const LastUserReport& u : users)
        out.push_back({u.site, u.connections, u.pooled, u.checked_out, u.leaks});
    return out;
}

std::vector<std::string> screen_texts(const Snapshot& snap, SortKey k, int width = 160, int height = 80)
{
    LayoutParams p;
    p.width = width;
    p.height = height;
    ViewState v;
    v.sort = k;
    std::vector<std::string> out;
    for (const Line& l : layout_screen(snap, Trends{}, v, p).lines)
        out.push_back(line_text(l));
    return out;
}

}  // namespace

TEST_CASE("last users: checked out, leaks and connections per last user, worst first", "[last_users]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    const Snapshot snap = build(raw);
    const ProcessReport& p = snap.processes.at(0);
    REQUIRE(p.leaks == 5);  // 3 + 1 pooled in a transaction for 40 s, the plain one by age
    CHECK(counts(p.last_users) == std::vector<Counts>{
                                      {"leaky_route (/srv/app.py:12)", 4, 4, 4, 3},
                                      {"failing_route (/srv/app.py:20)", 1, 1, 1, 1},
                                      {"plain_user (/srv/app.py:50)", 1, 0, 0, 1},
                                      {"healthy_route (/srv/app.py:40)", 3, 3, 1, 0},
                                      {"", 1, 1, 0, 0},
                                  });
    CHECK(p.last_users_total == 5);
    // The entries add up to the process's live handles and leaks.
    uint64_t conns = 0, leaks = 0;
    for (const LastUserReport& u : p.last_users) {
        conns += u.connections;
        leaks += u.leaks;
    }
    CHECK(conns == p.active);
    CHECK(leaks == p.leaks);
    REQUIRE(p.last_users[0].frames);
    CHECK(p.last_users[0].frames->front() == "leaky_route (/srv/app.py:12)");
    CHECK_FALSE(p.last_users.back().frames);
    // One process: the totals are its list.
    CHECK(counts(snap.last_users) == counts(p.last_users));
    CHECK(snap.last_users_total == 5);
}

TEST_CASE("last users: what counts as checked out", "[last_users]")
{
    ConnReport c;
    c.pooled = true;
    c.state_known = true;
    for (ConnState s : {ConnState::in_transaction, ConnState::in_error, ConnState::busy}) {
        c.state = s;
        CHECK(checked_out(c));
    }
    for (ConnState s : {ConnState::idle, ConnState::connecting, ConnState::broken, ConnState::unknown}) {
        c.state = s;
        CHECK_FALSE(checked_out(c));
    }
    c.state = ConnState::in_transaction;
    c.state_known = false;  // not read: not known to be borrowed
    CHECK_FALSE(checked_out(c));
    c.state_known = true;
    c.pooled = false;  // held by its acquirer, in no pool
    CHECK_FALSE(checked_out(c));
}

TEST_CASE("last users: bounded by --top, added up over processes by label", "[last_users]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    add_process(raw, 4243, {{1, 1, 100, ConnState::in_transaction, 40, 11}, {2, 1, 100, ConnState::idle, 40, 13}});
    const Snapshot snap = build(raw, 2);
    REQUIRE(snap.processes.size() == 2);
    CHECK(counts(snap.processes[0].last_users) == std::vector<Counts>{
                                                      {"leaky_route (/srv/app.py:12)", 4, 4, 4, 3},
                                                      {"failing_route (/srv/app.py:20)", 1, 1, 1, 1},
                                                  });
    CHECK(snap.processes[0].last_users_total == 5);
    CHECK(snap.processes[1].last_users_total == 2);
    CHECK(counts(snap.last_users) == std::vector<Counts>{
                                         {"leaky_route (/srv/app.py:12)", 5, 5, 5, 4},
                                         {"failing_route (/srv/app.py:20)", 1, 1, 1, 1},
                                     });
    CHECK(snap.last_users_total == 5);
}

TEST_CASE("last users: an exited process has none", "[last_users]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    raw.processes[0].stats.exited_ns = kNow - kSec;
    const Snapshot snap = build(raw);
    CHECK(snap.processes.at(0).last_users.empty());
    CHECK(snap.last_users.empty());
}

TEST_CASE("last users: JSON keys per process and at the top", "[last_users]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    const auto j = snapshot_to_json(build(raw, 4));
    const auto& p = j["processes"][0];
    REQUIRE(p["last_users"].size() == 4);
    CHECK(p["last_users_total"] == 5);
    const auto& first = p["last_users"][0];
    CHECK(first["site"] == "leaky_route (/srv/app.py:12)");
    CHECK(first["frames"][0] == "leaky_route (/srv/app.py:12)");
    CHECK(first["connections"] == 4);
    CHECK(first["pooled"] == 4);
    CHECK(first["checked_out"] == 4);
    CHECK(first["leaks"] == 3);
    CHECK(j["last_users"] == p["last_users"]);
    CHECK(j["last_users_total"] == 5);
    // The unknown last user: site and frames null.
    const auto all = snapshot_to_json(build(raw));
    const auto& unknown = all["processes"][0]["last_users"][4];
    CHECK(unknown["site"].is_null());
    CHECK(unknown["frames"].is_null());
    CHECK(unknown["connections"] == 1);
}

TEST_CASE("last users: the text report's table", "[last_users][text]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    const std::string text = render_text_report(build(raw, 4));
    CHECK(text.find("  last users (checked out: pooled handles borrowed now, in a transaction or busy):\n"
                    "  LAST USER                      CONNECTIONS POOLED CHECKED OUT  LEAKS\n"
                    "  leaky_route (/srv/app.py:12)             4      4           4      3\n"
                    "  failing_route (/srv/app.py:20)           1      1           1      1\n"
                    "  plain_user (/srv/app.py:50)              1      0           0      1\n"
                    "  healthy_route (/srv/app.py:40)           3      3           1      0\n"
                    "  ... and 1 more last user (--top)\n") != std::string::npos);
    // No pool: no word of checking out in the heading.
    RawState plain;
    add_process(plain, 4242, {{1, 2, 100, ConnState::idle, 70, 14}});
    const std::string plain_text = render_text_report(build(plain));
    CHECK(plain_text.find("  last users:\n  LAST USER") != std::string::npos);
    CHECK(plain_text.find("checked out:") == std::string::npos);
    // Nobody seen using any handle: no table.
    RawState quiet;
    add_process(quiet, 4242, {{1, 1, 100, ConnState::idle, 40, 0}});
    CHECK(render_text_report(build(quiet)).find("LAST USER") == std::string::npos);
}

TEST_CASE("last users: the live view shows the table and sorts by last user", "[last_users][layout]")
{
    CHECK(next_sort(SortKey::State) == SortKey::LastUser);
    CHECK(next_sort(SortKey::LastUser) == SortKey::Leaks);
    CHECK(std::string(sort_name(SortKey::LastUser)) == "last user");

    RawState raw;
    add_process(raw, 4242, kPoolApp);
    const Snapshot snap = build(raw);
    const std::vector<std::string> t = screen_texts(snap, SortKey::LastUser);
    CHECK(t.back().find("sort: last user") != std::string::npos);
    auto at = [&](const std::string& needle) {
        return std::find_if(t.begin(), t.end(), [&](const std::string& l) { return l.rfind(needle, 0) == 0; });
    };
    auto heading = at("  LAST USER ");
    REQUIRE(heading != t.end());
    CHECK(*(heading + 1) == "  leaky_route (/srv/app.py:12)             4      4           4      3");
    CHECK(*(heading + 5) == "  (not known)                              1      1           0      0");
    CHECK(heading < at("  LIVE CONNECTION"));

    // Live handles grouped by last user, in the table's order, oldest first
    // within one (all are 100 s old: by address), unknown last.
    auto order = [&](SortKey k) {
        std::vector<std::string> conns;
        for (const std::string& l : screen_texts(snap, k))
            if (l.size() > 4 && l[2] == '0' && l[3] == 'x')
                conns.push_back(l.substr(2, l.find(' ', 2) - 2));
        return conns;
    };
    CHECK(order(SortKey::Leaks) ==
          std::vector<std::string>{"0x1", "0x2", "0x3", "0x4", "0x5", "0x6", "0x7", "0x8", "0x9", "0xa"});
    CHECK(order(SortKey::LastUser) ==
          std::vector<std::string>{"0x1", "0x2", "0x3", "0x4", "0x5", "0xa", "0x6", "0x7", "0x8", "0x9"});
}

TEST_CASE("last users: the dashboard's table", "[last_users][http]")
{
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    const std::string html = dashboard_html(snapshot_to_json(build(raw)), DashboardOptions{});
    const size_t at = html.find("<h2>Last users</h2>");
    REQUIRE(at != std::string::npos);
    CHECK(html.find("<tr class=\"leak\"><td>app (4242)</td><td class=\"user\">leaky_route (/srv/app.py:12)</td>"
                    "<td class=\"n\">4</td><td class=\"n\">4</td><td class=\"n\">4</td><td class=\"n\">3</td></tr>",
                    at) != std::string::npos);
    CHECK(html.find("<tr class=\"healthy\"><td>app (4242)</td><td class=\"user\">healthy_route (/srv/app.py:40)</td>"
                    "<td class=\"n\">3</td><td class=\"n\">3</td><td class=\"n\">1</td><td class=\"n\">0</td></tr>",
                    at) != std::string::npos);
    CHECK(html.find("<td class=\"user\">(not known)</td>", at) != std::string::npos);
    CHECK(at < html.find("<h2>Live connections</h2>"));
    // No last user yet: no table.
    CHECK(dashboard_html(snapshot_to_json(Snapshot{}), DashboardOptions{}).find("Last users") == std::string::npos);
}

namespace {

const SiteReport* site_named(const ProcessReport& p, const std::string& name)
{
    for (const SiteReport& s : p.sites)
        if (s.site == name)
            return &s;
    return nullptr;
}

}  // namespace

TEST_CASE("last users: a pooled leak is charged to its borrower's site row, not the pool's", "[last_users]")
{
    RawState raw;
    std::vector<Handle> app = kPoolApp;
    // A pooled leak borrowed by a route that also acquires (plain_open):
    // charged to that row. One with no last user known: the pool's site.
    app.push_back({11, 1, 100, ConnState::in_transaction, 50, 15});
    app.push_back({12, 1, 100, ConnState::in_transaction, 40, 0});
    // A pooled handle whose state was not read: a leak by age, maybe idle
    // in its pool: the pool's, not its last user's (leaky_route).
    app.push_back({13, 1, 100, ConnState::unknown, 0, 11});
    add_process(raw, 4242, app);
    auto& states = raw.handles.edit();
    states.erase(std::find_if(states.begin(), states.end(),
                              [](const auto& e) { return e.first == std::make_pair(uint32_t{4242}, uint64_t{13}); }));
    const Snapshot snap = build(raw);
    const ProcessReport& p = snap.processes.at(0);
    REQUIRE(p.leaks == 8);
    const SiteReport* pool = site_named(p, "make_pool (/srv/app.py:5)");
    const SiteReport* leaky = site_named(p, "leaky_route (/srv/app.py:12)");
    const SiteReport* failing = site_named(p, "failing_route (/srv/app.py:20)");
    const SiteReport* plain = site_named(p, "plain_open (/srv/app.py:30)");
    REQUIRE(pool);
    REQUIRE(leaky);
    REQUIRE(failing);
    REQUIRE(plain);
    // The pool made 11 handles and holds them (active); only the one with no
    // known borrower is its leak.
    CHECK(pool->active == 12);
    CHECK(pool->leaks == 2);
    // Borrowers that made nothing: rows of their own, their leaks only.
    CHECK(leaky->acquired == 0);
    CHECK(leaky->active == 0);
    CHECK(leaky->leaks == 3);
    CHECK(leaky->max_ms == Approx(40000));  // kept in a transaction for 40 s
    REQUIRE(leaky->frames);
    CHECK(leaky->frames->front() == "leaky_route (/srv/app.py:12)");
    CHECK(failing->leaks == 1);
    CHECK(failing->active == 0);
    // plain_open: its own plain handle held 100 s, and the pooled one it borrowed.
    CHECK(plain->active == 1);
    CHECK(plain->leaks == 2);
    CHECK(plain->max_ms == Approx(100000));
    // healthy_route borrowed and gave back: no row.
    CHECK_FALSE(site_named(p, "healthy_route (/srv/app.py:40)"));
    // Worst first, and the rows add up to the process's leaks.
    CHECK(p.sites.front().site == "leaky_route (/srv/app.py:12)");
    uint64_t leaks = 0;
    for (const SiteReport& s : p.sites)
        leaks += s.leaks;
    CHECK(leaks == p.leaks);
    // The JSON's per-site list says the same.
    const auto j = snapshot_to_json(snap);
    bool found = false;
    for (const auto& s : j["processes"][0]["top_connection_users"])
        if (s["site"] == "leaky_route (/srv/app.py:12)") {
            found = true;
            CHECK(s["leaks"] == 3);
            CHECK(s["acquired"] == 0);
        }
    CHECK(found);
}

TEST_CASE("text outputs: a stack with Python frames shows those only", "[frames]")
{
    CHECK(python_frame("leak_raw (/tmp/app/app.py:31)"));
    CHECK(python_frame("Connection._execute_context (/usr/lib/python3/dist-packages/sqlalchemy/engine/base.py)"));
    CHECK_FALSE(python_frame("_PyObject_MakeTpCall+0x1c5 (python3.11)"));
    CHECK_FALSE(python_frame("_psycopg.cpython-311-x86_64-linux-gnu.so+0x16998"));
    CHECK_FALSE(python_frame("leaky_handler+0x3c (pqclient) pqclient.c:611"));
    CHECK(python_frame("main (/usr/local/bin/nightly-report:12)"));
    CHECK(python_frame("<module> (<string>:1)"));
    CHECK_FALSE(python_frame("0x7f3a12345678"));
    CHECK_FALSE(python_frame("main+0x10 (python3.11)"));
    const std::vector<std::string> mixed = {"_psycopg.cpython-311-x86_64-linux-gnu.so+0x16998",
                                            "_PyObject_MakeTpCall+0x1c5 (python3.11)",
                                            "connect (/usr/lib/python3/dist-packages/psycopg2/__init__.py:122)",
                                            "_PyFunction_Vectorcall+0x191 (python3.11)",
                                            "leak_raw (/tmp/app/app.py:31)", "main+0x40 (python3.11)"};
    CHECK(shown_frames(mixed) == std::vector<std::string_view>{
                                     "connect (/usr/lib/python3/dist-packages/psycopg2/__init__.py:122)",
                                     "leak_raw (/tmp/app/app.py:31)"});
    const std::vector<std::string> native = {"leaky_handler+0x3c (pqclient) pqclient.c:611", "main+0x10 (pqclient)"};
    CHECK(shown_frames(native).size() == 2);

    // The text report and the leak notices show them so.
    RawState raw;
    add_process(raw, 4242, kPoolApp);
    Snapshot snap = build(raw);
    for (SiteReport& s : snap.processes.at(0).sites)
        s.frames = std::make_shared<const std::vector<std::string>>(mixed);
    const std::string text = render_text_report(snap);
    CHECK(text.find("at leak_raw (/tmp/app/app.py:31)") != std::string::npos);
    CHECK(text.find("_PyObject_MakeTpCall") == std::string::npos);
    Notice n;
    n.kind = "leak";
    n.frames = std::make_shared<const std::vector<std::string>>(mixed);
    const std::string notice = render_notice(n, 30, 10);
    CHECK(notice.find("    at connect (") != std::string::npos);
    CHECK(notice.find("python3.11") == std::string::npos);
}
