// The live view's picture (screen_layout) at narrow and wide widths, and
// the terminal pieces that are pure (key decoding, frame encoding).
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "live_view.h"
#include "screen_layout.h"
#include "trends.h"

using namespace connleak;

namespace {

const char* const kLeakySite = "leaky_handler+0x1c (api)";
const char* const kGoodSite = "good_handler+0x2a (api)";

SiteReport make_site(const std::string& name, uint64_t active, uint64_t leaks, uint64_t acquired, uint64_t released,
                     double avg_ms, double max_ms)
{
    SiteReport s;
    s.site = name;
    s.active = active;
    s.leaks = leaks;
    s.acquired = acquired;
    s.released = released;
    s.avg_ms = avg_ms;
    s.max_ms = max_ms;
    return s;
}

ConnReport make_conn(uint64_t conn, uint32_t tid, const std::string& site, double age_ms, bool leak)
{
    ConnReport c;
    c.conn = conn;
    c.tid = tid;
    c.site = site;
    c.age_ms = age_ms;
    c.leak = leak;
    return c;
}

// PID 100 "api" leaking 4 of 6 live handles from one site, the other site
// healthy; PID 200 "worker" exited with 2 handles never finished.
Snapshot fixture(uint64_t leaky_active = 6)
{
    Snapshot snap;
    snap.wall_time_s = 1764187200;  // 2025-11-26T20:00:00Z
    snap.leak_after_s = 30;

    ProcessReport api;
    api.pid = 100;
    api.comm = "api";
    api.sites = {make_site(kLeakySite, leaky_active, 4, 10, 4, 12.5, 95000.0),
                 make_site(kGoodSite, 0, 0, 25, 25, 3.25, 40.0)};
    api.acquired = 35;
    api.released = 29;
    api.active = leaky_active;
    api.leaks = 4;
    for (uint64_t i = 0; i < leaky_active; i++)
        api.connections.push_back(make_conn(0x5500 + i, 101, kLeakySite, 95000.0 - 1000.0 * i, i < 4));

    ProcessReport worker;
    worker.pid = 200;
    worker.comm = "worker";
    worker.exited = true;
    worker.acquired = 3;
    worker.released = 1;
    worker.leaked_at_exit = 2;
    SiteReport w = make_site("run_job+0x10 (worker)", 0, 0, 3, 1, 7.0, 9.0);
    w.leaked_at_exit = 2;
    worker.sites = {w};

    snap.processes = {api, worker};
    snap.totals.acquired = 38;
    snap.totals.released = 30;
    snap.totals.active = leaky_active;
    snap.totals.leaks = 4;
    snap.totals.leaked_at_exit = 2;
    snap.totals.leak_ratio = 100.0 * 4 / 38;
    return snap;
}

Screen layout(const Snapshot& snap, const Trends& trends, int width, int height, ViewState view = {})
{
    LayoutParams p;
    p.width = width;
    p.height = height;
    return layout_screen(snap, trends, view, p);
}

std::vector<std::string> texts(const Screen& s)
{
    std::vector<std::string> out;
    for (const Line& l : s.lines)
        out.push_back(line_text(l));
    return out;
}

// The first line containing needle, or nullptr.
const Line* find_line(const Screen& s, const std::string& needle)
{
    for (const Line& l : s.lines)
        if (line_text(l).find(needle) != std::string::npos)
            return &l;
    return nullptr;
}

std::string text_of(const Screen& s, const std::string& needle)
{
    const Line* l = find_line(s, needle);
    return l ? line_text(*l) : "";
}

// Whitespace-separated words of a line.
std::vector<std::string> words(const std::string& s)
{
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        i = s.find_first_not_of(' ', i);
        if (i == std::string::npos)
            break;
        size_t j = s.find(' ', i);
        out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
        i = j == std::string::npos ? s.size() : j;
    }
    return out;
}

bool has_word(const std::string& line, const std::string& w)
{
    auto ws = words(line);
    return std::find(ws.begin(), ws.end(), w) != ws.end();
}

// The style of the span holding needle.
Style style_of(const Line& line, const std::string& needle)
{
    for (const Span& s : line)
        if (s.text.find(needle) != std::string::npos)
            return s.style;
    FAIL("no span with " << needle);
    return Style::Plain;
}

// The style of the value after the span labelled `label` ("name ").
Style value_style(const Line& line, const std::string& label)
{
    for (size_t i = 0; i + 1 < line.size(); i++)
        if (line[i].text == label)
            return line[i + 1].style;
    FAIL("no label " << label);
    return Style::Plain;
}

Trends trends_of(std::initializer_list<Snapshot> reports)
{
    Trends t;
    for (const Snapshot& s : reports)
        t.record(s);
    return t;
}

}  // namespace

TEST_CASE("every line fits and the key bar is on the last row, at any size", "[layout]")
{
    const Snapshot snap = fixture();
    const Trends trends = trends_of({fixture(4), snap});
    for (int width : {1, 2, 10, 20, 33, 40, 59, 60, 61, 80, 100, 132, 200, 400})
        for (int height : {1, 2, 3, 5, 10, 24, 60, 200}) {
            Screen s = layout(snap, trends, width, height);
            INFO("width " << width << " height " << height);
            REQUIRE(s.lines.size() == static_cast<size_t>(height));
            for (const Line& l : s.lines)
                CHECK(line_width(l) <= static_cast<size_t>(width));
            if (height >= 2)
                CHECK(s.lines.back().front().style == Style::Bar);
        }
}

TEST_CASE("wide: every column, the leaking row red and counted", "[layout]")
{
    const Trends trends = trends_of({fixture(4), fixture(6)});
    Screen s = layout(fixture(), trends, 160, 40);

    std::string heading = text_of(s, "SITE");
    for (const char* col : {"ACTIVE", "CHANGE", "TREND", "LEAKS", "ACQUIRED", "RELEASED"})
        CHECK(has_word(heading, col));
    for (const char* col : {"SINCE START", "AVG HOLD", "MAX HOLD"})
        CHECK(heading.find(col) != std::string::npos);

    const Line* leaky = find_line(s, kLeakySite);
    REQUIRE(leaky);
    CHECK(style_of(*leaky, kLeakySite) == Style::Leak);
    // SITE ACTIVE CHANGE SINCE-START TREND LEAKS ACQUIRED RELEASED AVG-HOLD MAX-HOLD,
    // the holds in words: 95000 ms reads as minutes, not "95000.0".
    std::vector<std::string> w = words(line_text(*leaky));
    INFO(line_text(*leaky));
    REQUIRE(w.size() == 16);
    CHECK(w[0] == "!");  // the leak is visible without colour too
    CHECK(std::vector<std::string>(w.begin() + 3, w.end()) ==
          std::vector<std::string>{"6", "+2", "+2", "up", "4", "10", "4", "12", "ms", "1", "min", "35", "s"});

    const Line* good = find_line(s, kGoodSite);
    REQUIRE(good);
    CHECK(style_of(*good, kGoodSite) == Style::Healthy);
    w = words(line_text(*good));
    CHECK(std::vector<std::string>(w.begin() + 2, w.end()) ==  // no "!" on a healthy row
          std::vector<std::string>{"0", "0", "0", "flat", "0", "25", "25", "3.2", "ms", "40", "ms"});

    // Site names are padded to the longest, not to the screen: numbers stay
    // next to the names they belong to on a wide terminal.
    CHECK(line_text(*leaky).size() < 110);
}

TEST_CASE("the header has the totals, leaks in red", "[layout]")
{
    Screen s = layout(fixture(), trends_of({fixture(4), fixture(6)}), 160, 40);
    std::vector<std::string> t = texts(s);
    CHECK(t[0].find(" connleak  2025-11-26 20:00:00 UTC") == 0);
    CHECK(t[0].find("every 2s  leak after 30s") != std::string::npos);
    const std::string totals = t[1];
    for (const char* field : {"acquired 38", "released 30", "active 6 (+2 in 2s)", "leaks 4", "leak ratio 10.5%",
                              "leaked at exit 2", "dropped 0"})
        CHECK(totals.find(field) != std::string::npos);
    CHECK(style_of(s.lines[1], "4") == Style::Leak);  // the first "4" is the leaks value
    CHECK(style_of(s.lines[1], "10.5%") == Style::Leak);
}

TEST_CASE("the header shows the database sockets and the discrepancy", "[layout]")
{
    Snapshot snap = fixture();
    CHECK(texts(layout(snap, Trends{}, 160, 40))[1].find("db sockets") == std::string::npos);  // --no-sockets
    snap.totals.sockets_tracked = true;
    snap.totals.db_sockets = 9;
    snap.totals.tracking_discrepancy = 3;  // 9 sockets, 6 live handles
    Screen s = layout(snap, Trends{}, 200, 40);
    const std::string totals = texts(s)[1];
    CHECK(totals.find("db sockets 9") != std::string::npos);
    CHECK(totals.find("discrepancy +3") != std::string::npos);
    CHECK(totals.find("discrepancy") < totals.find("dropped"));
    CHECK(value_style(s.lines[1], "discrepancy ") == Style::Warn);
    snap.totals.db_sockets = 6;
    snap.totals.tracking_discrepancy = 0;
    s = layout(snap, Trends{}, 200, 40);
    CHECK(texts(s)[1].find("discrepancy 0") != std::string::npos);
    CHECK(value_style(s.lines[1], "discrepancy ") == Style::Healthy);
}

TEST_CASE("without --server, a header line says how many sockets predate the attach", "[layout]")
{
    Snapshot snap = fixture();
    snap.processes[0].sockets.tracked = true;
    snap.processes[0].sockets.pre_attach = 3;
    snap.processes[1].sockets.tracked = true;
    snap.processes[1].sockets.pre_attach = 5;  // exited: the kernel closed them, not counted
    LayoutParams params;
    params.width = 200;
    params.height = 40;
    params.pre_attach_hint = true;
    Screen s = layout_screen(snap, Trends{}, ViewState{}, params);
    REQUIRE(s.lines.size() > 2);
    // Right under the totals, where "leaks 4" is read.
    CHECK(line_text(s.lines[2]) == " 3 db sockets from before the attach, not counted: --server DSN shows them");
    CHECK(s.lines[2].front().style == Style::Warn);

    snap.processes[0].sockets.pre_attach = 1;
    s = layout_screen(snap, Trends{}, ViewState{}, params);
    CHECK(line_text(s.lines[2]) == " 1 db socket from before the attach, not counted: --server DSN shows it");

    // On 80 columns the whole line still fits.
    params.width = 80;
    snap.processes[0].sockets.pre_attach = 3;
    CHECK(text_of(layout_screen(snap, Trends{}, ViewState{}, params), "before the attach") ==
          " 3 db sockets from before the attach, not counted: --server DSN shows them");

    auto said = [](const Snapshot& sn, const LayoutParams& lp) {
        return find_line(layout_screen(sn, Trends{}, ViewState{}, lp), "before the attach") != nullptr;
    };
    CHECK(said(snap, params));
    LayoutParams server = params;  // --server: the rows say it
    server.pre_attach_hint = false;
    CHECK_FALSE(said(snap, server));
    LayoutParams waiting = params;  // no report yet
    waiting.waiting = true;
    CHECK_FALSE(said(snap, waiting));
    snap.processes[0].sockets.pre_attach = 0;  // only the exited process's
    CHECK_FALSE(said(snap, params));
}

TEST_CASE("a healthy header is green", "[layout]")
{
    Snapshot snap = fixture(0);
    snap.totals.leaks = 0;
    snap.totals.leak_ratio = 0;
    Screen s = layout(snap, Trends{}, 120, 30);
    CHECK(style_of(s.lines[1], "0.0%") == Style::Healthy);
}

TEST_CASE("80 columns: the least telling columns make room for the site", "[layout]")
{
    Screen s = layout(fixture(), trends_of({fixture()}), 80, 30);
    std::string heading = text_of(s, "SITE");
    CHECK_FALSE(has_word(heading, "RELEASED"));
    CHECK(heading.find("MAX HOLD") == std::string::npos);
    CHECK(heading.find("SINCE START") == std::string::npos);
    CHECK(heading.find("AVG HOLD") != std::string::npos);
    for (const char* col : {"ACTIVE", "CHANGE", "TREND", "LEAKS", "ACQUIRED"})
        CHECK(has_word(heading, col));
    std::string row = text_of(s, kLeakySite);  // the whole name still fits
    // First report: no change yet (CHANGE blank), TREND new.
    CHECK(words(row) ==
          std::vector<std::string>{"!", "leaky_handler+0x1c", "(api)", "6", "new", "4", "10", "12", "ms"});
}

TEST_CASE("narrow: site, active and leaks survive", "[layout]")
{
    for (int width : {30, 40, 50, 60}) {
        INFO("width " << width);
        Screen s = layout(fixture(), Trends{}, width, 30);
        std::string heading = text_of(s, "SITE");
        CHECK(has_word(heading, "ACTIVE"));
        CHECK(has_word(heading, "LEAKS"));
        CHECK_FALSE(has_word(heading, "RELEASED"));
        CHECK(heading.find("SINCE START") == std::string::npos);
        const Line* row = find_line(s, "leaky_h");
        REQUIRE(row);
        CHECK(style_of(*row, "leaky_h") == Style::Leak);
        std::vector<std::string> w = words(line_text(*row));
        // ... ACTIVE [CHANGE] [TREND] LEAKS: the leaks count ends the row.
        CHECK(w.back() == "4");
        CHECK(std::find(w.begin(), w.end(), "6") != w.end());
    }
    // At 60, a long site name is cut, visibly.
    Snapshot snap = fixture();
    snap.processes[0].sites[0].site = "a_really_long_function_name_that_goes_on+0x1c (libsomething.so.5)";
    Screen s = layout(snap, Trends{}, 60, 30);
    const Line* row = find_line(s, "a_really");
    REQUIRE(row);
    CHECK(line_text(*row).find("~ ") != std::string::npos);
    CHECK(line_width(*row) == 60);
}

TEST_CASE("the header flows onto more lines when narrow", "[layout]")
{
    Screen s = layout(fixture(), Trends{}, 40, 30);
    std::string all;
    for (const std::string& t : texts(s))
        all += t + "\n";
    for (const char* field : {"acquired 38", "released 30", "leaks 4", "leak ratio 10.5%", "dropped 0"})
        CHECK(all.find(field) != std::string::npos);
}

TEST_CASE("processes: live first, exited ones say so", "[layout]")
{
    Screen s = layout(fixture(), Trends{}, 120, 40);
    std::vector<std::string> t = texts(s);
    auto at = [&](const std::string& needle) {
        return std::find_if(t.begin(), t.end(),
                            [&](const std::string& l) { return l.find(needle) != std::string::npos; }) -
               t.begin();
    };
    CHECK(at("PID 100 api") < at("PID 200 worker"));
    std::string worker = text_of(s, "PID 200 worker");
    CHECK(worker.find("exited") != std::string::npos);
    CHECK(worker.find("leaked at exit 2") != std::string::npos);
    // An exited process's table counts handles left at exit.
    CHECK(t[static_cast<size_t>(at("PID 200 worker")) + 1].find("AT EXIT") != std::string::npos);
    const Line* job = find_line(s, "run_job");
    REQUIRE(job);
    CHECK(style_of(*job, "run_job") == Style::Leak);
}

TEST_CASE("the oldest live connections with their age", "[layout]")
{
    Screen s = layout(fixture(), Trends{}, 120, 40);
    CHECK(words(text_of(s, "LIVE CONNECTION")) ==
          std::vector<std::string>{"LIVE", "CONNECTION", "HELD", "STATE", "THREAD", "SITE"});
    const Line* oldest = find_line(s, "0x5500 ");
    REQUIRE(oldest);
    CHECK(words(line_text(*oldest)) ==
          std::vector<std::string>{"!", "0x5500", "1", "min", "35", "s", "-", "101", "leaky_handler+0x1c", "(api)"});
    CHECK(style_of(*oldest, "0x5500") == Style::Leak);
    CHECK(find_line(s, "0x5505 "));  // 40 rows: all six fit
    CHECK_FALSE(find_line(s, "more live"));
}

namespace {

// One process, `n` live handles from one site, as pqclient leaking them.
Snapshot many_live(uint32_t pid, size_t n, size_t sites = 1)
{
    Snapshot snap;
    snap.wall_time_s = 1764187200;
    snap.leak_after_s = 0;
    ProcessReport p;
    p.pid = pid;
    p.comm = "pqclient";
    for (size_t i = 0; i < sites; i++)
        p.sites.push_back(
            make_site("site" + std::to_string(i) + "+0x1c (pqclient)", i ? 0 : n, i ? 0 : n, n, 0, 0, 1000));
    p.acquired = p.active = p.leaks = n;
    for (size_t i = 0; i < n; i++)
        p.connections.push_back(make_conn(0x7000 + i, pid, "site0+0x1c (pqclient)", 9000.0 - i, true));
    snap.processes = {p};
    snap.totals.acquired = snap.totals.active = snap.totals.leaks = n;
    return snap;
}

size_t rows_with(const Screen& s, const std::string& needle)
{
    size_t n = 0;
    for (const Line& l : s.lines)
        n += line_text(l).find(needle) != std::string::npos;
    return n;
}

}  // namespace

TEST_CASE("a tall terminal lists as many live connections as fit", "[layout]")
{
    // Issue #18: 150x40, 7 live connections: all 7, not 3 and "+4 more".
    Screen s = layout(many_live(500, 7), Trends{}, 150, 40);
    CHECK(rows_with(s, "! 0x700") == 7);
    CHECK_FALSE(find_line(s, "more live"));
    CHECK(s.max_scroll == 0);

    // 40 live on 40 rows: title, totals, blank; heading, table heading,
    // site, connection heading; key bar: 32 rows left, one for "+N more".
    s = layout(many_live(500, 40), Trends{}, 150, 40);
    CHECK(s.page == 36);
    CHECK(rows_with(s, "! 0x70") == 31);
    CHECK(text_of(s, "more live") == "  +9 more live connections, at the end");
    // The rest by scrolling: to the end, where the other 9 are.
    ViewState v;
    v.scroll = 1000;
    Screen end = layout(many_live(500, 40), Trends{}, 150, 40, v);
    CHECK(find_line(end, "PID 500 pqclient: 9 more live connections"));
    CHECK(find_line(end, "0x7027 "));  // the youngest
    CHECK(find_line(end, "0x701f "));  // the 32nd, the first not listed in place
    CHECK(end.max_scroll == 12);       // 36 in place, then blank, heading, column heading, 9

    // A short terminal still lists the oldest three in place: 12 rows,
    // 8 for the body (heading, table heading, site, connection heading,
    // 3 rows, "+4 more").
    s = layout(many_live(500, 7), Trends{}, 150, 12);
    CHECK(rows_with(s, "! 0x700") == 3);
    CHECK(find_line(s, "+4 more live connections, at the end"));
}

TEST_CASE("every process's sites come before more live connections", "[layout]")
{
    Snapshot a = many_live(500, 20, 3);
    Snapshot b = many_live(600, 20, 3);
    a.processes.push_back(b.processes[0]);
    // 30 rows: header 3, key bar 1: 26 body rows. Sites: 2 x (heading,
    // table heading, 3 sites) + blank = 11; 3 connections each at least
    // (heading, 3, "+N more" = 5 each): 21; 5 rows left, shared in turn.
    Screen s = layout(a, Trends{}, 150, 30);
    REQUIRE(s.page == 26);
    CHECK(find_line(s, "PID 500 pqclient"));
    CHECK(find_line(s, "PID 600 pqclient"));
    CHECK(rows_with(s, "site2+0x1c") == 2);
    CHECK(rows_with(s, "! 0x70") == 3 + 3 + 5);
    CHECK(find_line(s, "+14 more live connections, at the end"));  // pid 500: 6 shown
    CHECK(find_line(s, "+15 more live connections, at the end"));  // pid 600: 5 shown
    CHECK(s.max_scroll == 2 * (1 + 1 + 1) + 14 + 15);              // blank, heading, column heading, rows
}

TEST_CASE("processes that never touched libpq are left out, named once", "[layout]")
{
    Snapshot snap = fixture();
    ProcessReport helper;  // ldconfig, spawned by a library
    helper.pid = 300;
    helper.comm = "ldconfig";
    helper.exited = true;
    ProcessReport inherited;  // a child holding a database socket it inherited
    inherited.pid = 400;
    inherited.comm = "child";
    inherited.sockets.tracked = true;
    inherited.sockets.db_sockets = 1;
    inherited.sockets.untracked = 1;
    snap.processes.push_back(helper);
    snap.processes.push_back(inherited);
    Screen s = layout(snap, Trends{}, 160, 60);
    CHECK_FALSE(find_line(s, "PID 300"));
    CHECK(find_line(s, "PID 400 child"));
    CHECK(text_of(s, "not shown") ==
          "  not shown: 1 exited process that made no libpq call and held no database socket: ldconfig (pid 300)");

    Snapshot only;  // nothing else: still named
    only.processes.push_back(helper);
    s = layout(only, Trends{}, 160, 60);
    CHECK_FALSE(find_line(s, "PID 300"));
    CHECK(find_line(s, "ldconfig (pid 300)"));

    helper.exited = false;  // live: a target before its first connect, shown
    only.processes = {helper};
    s = layout(only, Trends{}, 160, 60);
    CHECK(find_line(s, "PID 300 ldconfig"));
    CHECK_FALSE(find_line(s, "not shown"));
}

TEST_CASE("sort keys cycle and order sites and processes", "[layout]")
{
    CHECK(next_sort(SortKey::Leaks) == SortKey::Active);
    CHECK(next_sort(SortKey::Active) == SortKey::Acquired);
    CHECK(next_sort(SortKey::Acquired) == SortKey::AvgHold);
    CHECK(next_sort(SortKey::AvgHold) == SortKey::State);
    CHECK(next_sort(SortKey::State) == SortKey::LastUser);
    CHECK(std::string(sort_name(SortKey::State)) == "state");
    CHECK(std::string(sort_name(SortKey::AvgHold)) == "avg hold");

    auto order = [](SortKey k) {
        ViewState v;
        v.sort = k;
        Screen s = layout(fixture(), Trends{}, 120, 40, v);
        std::vector<std::string> t = texts(s);
        auto pos = [&](const char* needle) {
            return std::find_if(t.begin(), t.end(),
                                [&](const std::string& l) { return l.find(needle) != std::string::npos; }) -
                   t.begin();
        };
        CHECK(t.back().find(std::string("sort: ") + sort_name(k)) != std::string::npos);
        return pos(kLeakySite) < pos(kGoodSite);
    };
    CHECK(order(SortKey::Leaks));
    CHECK(order(SortKey::Active));
    CHECK_FALSE(order(SortKey::Acquired));  // 25 > 10
    CHECK(order(SortKey::AvgHold));         // 12.5 > 3.25

    // Processes too: the exited worker stays last even when it leads.
    Snapshot snap = fixture();
    snap.processes[1].acquired = 1000;
    ViewState v;
    v.sort = SortKey::Acquired;
    std::vector<std::string> t = texts(layout(snap, Trends{}, 120, 40, v));
    auto api = std::find_if(t.begin(), t.end(), [](const std::string& l) { return l.find("PID 100") == 0; });
    auto worker = std::find_if(t.begin(), t.end(), [](const std::string& l) { return l.find("PID 200") == 0; });
    CHECK(api < worker);
}

TEST_CASE("sorting by state lists handles kept in a transaction first, idle last", "[layout]")
{
    Snapshot snap = fixture();
    ProcessReport& p = snap.processes[0];
    p.connections.clear();
    const std::vector<std::pair<uint64_t, ConnState>> handles = {
        {0xa1, ConnState::idle}, {0xa2, ConnState::in_transaction}, {0xa3, ConnState::busy}, {0xa4, ConnState::idle}};
    for (const auto& [addr, state] : handles) {
        ConnReport c;
        c.conn = addr;
        c.tid = 1;
        c.site = kLeakySite;
        c.age_ms = 1000.0 * static_cast<double>(0xb0 - addr);  // oldest first: a1 .. a4
        c.state_known = true;
        c.state = state;
        c.pooled = true;
        p.connections.push_back(c);
    }
    p.states = {{"busy", 1}, {"idle", 2}, {"in_transaction", 1}};
    auto rows = [&](SortKey k) {
        ViewState v;
        v.sort = k;
        std::vector<std::string> order;
        for (const std::string& l : texts(layout(snap, Trends{}, 160, 60, v)))
            if (l.find("0xa") != std::string::npos)
                order.push_back(l.substr(l.find("0xa"), 4) + " " + words(l)[3]);  // after "12.0 s"
        return order;
    };
    CHECK(rows(SortKey::Leaks) ==
          std::vector<std::string>{"0xa1 idle*", "0xa2 in_transaction*", "0xa3 busy*", "0xa4 idle*"});
    CHECK(rows(SortKey::State) ==
          std::vector<std::string>{"0xa2 in_transaction*", "0xa3 busy*", "0xa1 idle*", "0xa4 idle*"});
}

TEST_CASE("scrolling when the rows exceed the screen", "[layout]")
{
    const Snapshot snap = fixture();
    Screen all = layout(snap, Trends{}, 120, 60);
    CHECK(all.max_scroll == 0);
    CHECK(texts(all).back().find("lines") == std::string::npos);

    ViewState v;
    Screen top = layout(snap, Trends{}, 120, 10, v);
    CHECK(top.max_scroll > 0);
    CHECK(top.page == 6);  // title, totals, blank, ... key bar
    CHECK(texts(top).back().find("j/k scroll") != std::string::npos);
    CHECK(texts(top).back().find("lines 1-6 of") != std::string::npos);
    CHECK(texts(top)[3].find("PID 100 api") == 0);

    v.scroll = 1;
    Screen down = layout(snap, Trends{}, 120, 10, v);
    CHECK(texts(down)[3] == texts(top)[4]);  // the body moved up one line
    CHECK(texts(down)[0] == texts(top)[0]);  // the header did not
    CHECK(texts(down).back().find("lines 2-7 of") != std::string::npos);

    v.scroll = 1000;
    CHECK(layout(snap, Trends{}, 120, 10, v).scroll == top.max_scroll);
    v.scroll = -5;
    CHECK(layout(snap, Trends{}, 120, 10, v).scroll == 0);
}

TEST_CASE("paused and waiting are visible", "[layout]")
{
    ViewState v;
    v.paused = true;
    Screen s = layout(fixture(), Trends{}, 120, 30, v);
    CHECK(texts(s).back().find("PAUSED") == 1);
    CHECK(s.lines.back().front().style == Style::BarWarn);

    LayoutParams p;
    p.width = 80;
    p.height = 24;
    p.interval_s = 0.5;
    p.waiting = true;
    Screen w = layout_screen(Snapshot{}, Trends{}, ViewState{}, p);
    CHECK(texts(w)[0].find("every 0.5s") != std::string::npos);
    CHECK(find_line(w, "waiting for the first report"));
    CHECK_FALSE(find_line(w, "acquired"));
}

TEST_CASE("names cannot drive the terminal", "[layout]")
{
    CHECK(printable("api\x1b[2Jx") == "api\\x1b[2Jx");
    CHECK(printable("a\tb\x7f") == "a\\x09b\\x7f");
    CHECK(printable("\xc2\x9b"
                    "31m") == "\\xc2\\x9b31m");  // C1 CSI
    CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");
    CHECK(printable("bad\xff\xc3") == "bad\\xff\\xc3");
    Snapshot snap = fixture();
    snap.processes[0].comm = "evil\x1b]0;x\x07";
    snap.processes[0].sites[0].site = "f\x1b[31m";
    Screen s = layout(snap, Trends{}, 120, 40);
    for (const Line& l : s.lines)
        for (const Span& sp : l)
            for (char c : sp.text)
                CHECK(static_cast<unsigned char>(c) >= 0x20);
}

TEST_CASE("cells: clipping and compact numbers", "[layout]")
{
    CHECK(clip("abcdef", 6) == "abcdef");
    CHECK(clip("abcdef", 4) == "abc~");
    CHECK(clip("abcdef", 1) == "~");
    CHECK(clip("abcdef", 0) == "");
    CHECK(clip("\xc3\xa9\xc3\xa9\xc3\xa9", 2) == "\xc3\xa9~");
    CHECK(text_width("\xc3\xa9t\xc3\xa9") == 3);

    CHECK(format_count(999, 3) == "999");
    CHECK(format_count(1234, 3) == "1k");
    CHECK(format_count(1234, 4) == "1234");
    CHECK(format_count(12345, 4) == "12k");
    CHECK(format_count(1234567, 5) == "1.2M");
    CHECK(format_count(123456789, 4) == "123M");
    CHECK(format_count(999999, 4) == "1.0M");
}

TEST_CASE("keys: letters, arrows, and sequences split across reads", "[keys]")
{
    std::string in = "qspjk";
    CHECK(decode_keys(in) == std::vector<Key>{Key::Quit, Key::Sort, Key::Pause, Key::Down, Key::Up});
    CHECK(in.empty());

    in = "\x1b[A\x1b[B\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[F";
    CHECK(decode_keys(in) ==
          std::vector<Key>{Key::Up, Key::Down, Key::Up, Key::PageUp, Key::PageDown, Key::Top, Key::Bottom});

    in = "j\x1b[";  // the rest of the arrow comes with the next read
    CHECK(decode_keys(in) == std::vector<Key>{Key::Down});
    CHECK(in == "\x1b[");
    in += "B";
    CHECK(decode_keys(in) == std::vector<Key>{Key::Down});
    CHECK(in.empty());

    in = "\x1bq";  // a lone ESC binds nothing; the q still quits
    CHECK(decode_keys(in) == std::vector<Key>{Key::Quit});
    in = "x\x1b[1;5C\x0c";  // unbound keys are ignored
    CHECK(decode_keys(in) == std::vector<Key>{Key::Redraw});
}

TEST_CASE("frames: colours only when wanted, full-width lines kept whole", "[keys]")
{
    std::vector<Line> lines = {{{"ab", Style::Leak}, {"cd", Style::Healthy}}, {{"wxyz", Style::Bar}}};
    std::string color = encode_frame(lines, 4, 3, true);
    CHECK(color.find("\x1b[1;1H\x1b[1;31mab\x1b[0m\x1b[32mcd\x1b[0m") == 0);
    CHECK(color.find("\x1b[2;1H\x1b[7mwxyz\x1b[0m\x1b[3;1H\x1b[J") != std::string::npos);
    // Erasing after a full-width line would take its last cell with it.
    CHECK(color.find("\x1b[K") == std::string::npos);

    std::string plain = encode_frame(lines, 80, 2, false);
    CHECK(plain.find("31m") == std::string::npos);
    CHECK(plain.find("32m") == std::string::npos);
    CHECK(plain.find("\x1b[1mab") != std::string::npos);  // a leak is still bold
    CHECK(plain.find("\x1b[K") != std::string::npos);
    CHECK(plain.find("\x1b[J") == std::string::npos);  // every row painted
}
