// LeakNotices: one notice per connection crossing leak-after, one release
// notice per reported connection finished later, nothing repeated.
#include <algorithm>
#include <catch2/catch.hpp>
#include <malloc.h>

#include "leak_notices.h"
#include "notices_text.h"

using namespace connleak;

namespace {

ConnReport conn(uint64_t addr, uint64_t acquired_ns, double age_ms, bool leak)
{
    ConnReport c;
    c.conn = addr;
    c.tid = 11;
    c.site = "get_users+0x3c (api)";
    c.age_ms = age_ms;
    c.leak = leak;
    c.acquired_ns = acquired_ns;
    c.frames = std::make_shared<const std::vector<std::string>>(
        std::vector<std::string>{"get_users+0x3c (api)", "handle+0x10 (api)", "main+0x91 (api)"});
    return c;
}

Snapshot snap(int64_t t, std::vector<ConnReport> conns, bool exited = false)
{
    Snapshot s;
    s.wall_time_s = t;
    ProcessReport p;
    p.pid = 10;
    p.comm = "api";
    p.exited = exited;
    if (!exited)
        p.connections = std::move(conns);
    s.processes.push_back(p);
    return s;
}

}  // namespace

TEST_CASE("a leak is noticed once, its release once")
{
    LeakNotices ln;
    auto n1 = ln.update(snap(100, {conn(0xa, 1, 500, false), conn(0xb, 2, 31000, true)}));
    REQUIRE(n1.size() == 1);
    CHECK(n1[0].kind == "leak");
    CHECK(n1[0].conn == 0xb);
    CHECK(n1[0].pid == 10);
    CHECK(n1[0].tid == 11);
    CHECK(n1[0].comm == "api");
    CHECK(n1[0].age_ms == 31000);
    CHECK(n1[0].seq == 1);
    CHECK(n1[0].wall_time_s == 100);
    REQUIRE(n1[0].frames);
    CHECK(n1[0].frames->size() == 3);

    auto n2 = ln.update(snap(102, {conn(0xa, 1, 30500, true), conn(0xb, 2, 33000, true)}));
    REQUIRE(n2.size() == 1);
    CHECK(n2[0].conn == 0xa);
    CHECK(n2[0].seq == 2);
    CHECK(ln.update(snap(104, {conn(0xa, 1, 32500, true), conn(0xb, 2, 35000, true)})).empty());

    // b finished: its exact hold time comes from the lookup when known.
    auto n3 = ln.update(snap(106, {conn(0xa, 1, 34500, true)}),
                        [](uint32_t pid, uint64_t c, uint64_t acq) -> std::optional<double> {
                            if (pid == 10 && c == 0xb && acq == 2)
                                return 35500.0;
                            return std::nullopt;
                        });
    REQUIRE(n3.size() == 1);
    CHECK(n3[0].kind == "released");
    CHECK(n3[0].conn == 0xb);
    CHECK(n3[0].age_ms == 35500);
    CHECK(n3[0].site == "get_users+0x3c (api)");
    CHECK(n3[0].wall_time_s == 106);

    // a finished, no lookup: the last age seen.
    auto n4 = ln.update(snap(108, {}));
    REQUIRE(n4.size() == 1);
    CHECK(n4[0].conn == 0xa);
    CHECK(n4[0].age_ms == 34500);
    CHECK(ln.update(snap(110, {})).empty());
    CHECK(ln.recent().size() == 4);
    CHECK(ln.reported() == 0);
}

// Bytes glibc's heap holds now (the small chunks and the mmapped ones).
static size_t heap_in_use()
{
    const struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

TEST_CASE("a reported leak is kept in at most 80 bytes, its texts and frames shared with its site's")
{
    // 10 processes x 1,000 leaks of one site (the scale bench: 1,000 x 100).
    const Frames frames = std::make_shared<const std::vector<std::string>>(
        std::vector<std::string>{"get_users+0x3c (api)", "handle+0x10 (api)", "main+0x91 (api)"});
    Snapshot s;
    s.wall_time_s = 100;
    for (uint32_t pid = 1; pid <= 10; pid++) {
        ProcessReport p;
        p.pid = pid;
        p.comm = "api-worker-process";
        for (uint64_t i = 0; i < 1000; i++) {
            ConnReport c = conn(0x1000 + i * 0x100, i + 1, 31000, true);
            c.site = "get_users_from_the_database+0x3c (api)";
            c.frames = frames;
            p.connections.push_back(std::move(c));
        }
        s.processes.push_back(std::move(p));
    }
    LeakNotices ln(1);  // one recent notice kept: what is measured is the reported leaks
    const size_t before = heap_in_use();
    {
        const std::vector<Notice> batch = ln.update(s);
        CHECK(batch.size() == 10000);
        CHECK(batch.capacity() == batch.size());  // made at its size, not grown to 16,384
    }
    const size_t after = heap_in_use();
    REQUIRE(ln.reported() == 10000);
#ifndef __SANITIZE_ADDRESS__  // ASan's allocator is not glibc's: mallinfo2 does not see it
    REQUIRE(after > before);
    // 64 with a shared_ptr to its origin; 144: a tree node each, with its comm and site shared apart
    CHECK((after - before) / 10000 <= 60);
#endif
    // Still all known: each one's release is noticed, with its texts.
    s.processes[3].connections.clear();
    auto released = ln.update(s);
    REQUIRE(released.size() == 1000);
    CHECK(released[0].kind == "released");
    CHECK(released[0].pid == 4);
    CHECK(released[0].conn == 0x1000);
    CHECK(released[0].comm == "api-worker-process");
    CHECK(released[0].site == "get_users_from_the_database+0x3c (api)");
    CHECK(released[0].frames == frames);
    CHECK(released[999].conn == 0x1000 + 999 * 0x100);
    CHECK(ln.reported() == 9000);
}

TEST_CASE("a reused handle address is another connection")
{
    LeakNotices ln;
    CHECK(ln.update(snap(1, {conn(0xa, 1, 40000, true)})).size() == 1);
    auto n = ln.update(snap(2, {conn(0xa, 7, 40000, true)}));
    REQUIRE(n.size() == 2);
    CHECK(n[0].kind == "released");
    CHECK(n[1].kind == "leak");
    CHECK(n[1].conn == 0xa);
}

TEST_CASE("leaked at exit is no release, unless the release was seen")
{
    LeakNotices a, b;
    a.update(snap(1, {conn(0xa, 1, 40000, true)}));
    CHECK(a.update(snap(2, {}, true)).empty());
    CHECK(a.reported() == 0);

    b.update(snap(1, {conn(0xa, 1, 40000, true)}));
    auto n = b.update(snap(2, {}, true), [](uint32_t, uint64_t, uint64_t) { return std::optional<double>(41000); });
    REQUIRE(n.size() == 1);
    CHECK(n[0].kind == "released");
    CHECK(n[0].age_ms == 41000);
}

TEST_CASE("a process no longer listed forgets its leaks silently")
{
    LeakNotices ln;
    ln.update(snap(1, {conn(0xa, 1, 40000, true)}));
    Snapshot empty;
    CHECK(ln.update(empty).empty());
    CHECK(ln.reported() == 0);
}

TEST_CASE("recent notices are bounded, oldest dropped first")
{
    LeakNotices ln(2);
    ln.update(snap(1, {conn(0xa, 1, 40000, true), conn(0xb, 2, 40000, true), conn(0xc, 3, 40000, true)}));
    REQUIRE(ln.recent().size() == 2);
    CHECK(ln.recent().front().seq == 2);
    CHECK(ln.recent().back().seq == 3);
}

TEST_CASE("notice text: one line, frames bounded")
{
    LeakNotices ln;
    auto n = ln.update(snap(1, {conn(0xab, 1, 31234, true)}));
    REQUIRE(n.size() == 1);
    std::string text = render_notice(n[0], 30, 2);
    CHECK(text ==
          "connleak: leak: connection 0xab of pid 10 (api) on thread 11 held 31.2 s (leak-after 30s), acquired at "
          "get_users+0x3c (api)\n"
          "    at get_users+0x3c (api)\n"
          "    at handle+0x10 (api)\n"
          "    ... 1 more\n");
    auto r = ln.update(snap(2, {}));
    REQUIRE(r.size() == 1);
    CHECK(render_notice(r[0], 30, 2) ==
          "connleak: released: previously reported leaked connection 0xab of pid 10 (api) on thread 11 was "
          "finished after 31.2 s, acquired at get_users+0x3c (api)\n");
}

namespace {

size_t line_count(const std::string& text)
{
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// n connections of pid 10 leaking from one site, all in one interval.
std::vector<ConnReport> leaks_from(const std::string& site, uint64_t first_addr, size_t n, double age_ms = 31000)
{
    std::vector<ConnReport> out;
    for (size_t i = 0; i < n; i++) {
        ConnReport c = conn(first_addr + i, first_addr + i, age_ms + 100.0 * static_cast<double>(i), true);
        c.site = site;
        out.push_back(c);
    }
    return out;
}

}  // namespace

TEST_CASE("10 leaks from one site in one interval: one line, the stack, one folded line")
{
    LeakNotices ln;
    NoticeText nt;
    NoticeTextOptions o;
    o.leak_after_s = 30;
    o.frames_shown = 2;
    auto batch = ln.update(snap(1, leaks_from("get_users+0x3c (api)", 0x100, 10)));
    REQUIRE(batch.size() == 10);  // every one is still a notice of its own (JSON)
    std::string text = nt.render(batch, o);
    CHECK(text ==
          "connleak: leak: connection 0x100 of pid 10 (api) on thread 11 held 31.0 s (leak-after 30s), acquired at "
          "get_users+0x3c (api)\n"
          "    at get_users+0x3c (api)\n"
          "    at handle+0x10 (api)\n"
          "    ... 1 more\n"
          "connleak: leak: and 9 more connections of pid 10 (api) from the same site, held 31.1 s to 31.9 s\n");
    CHECK(line_count(text) == 5);

    // The next interval, 10 more from that site: its stack was shown.
    std::vector<ConnReport> all = leaks_from("get_users+0x3c (api)", 0x100, 10);
    for (const ConnReport& c : leaks_from("get_users+0x3c (api)", 0x200, 10))
        all.push_back(c);
    batch = ln.update(snap(3, all));
    REQUIRE(batch.size() == 10);
    text = nt.render(batch, o);
    CHECK(line_count(text) == 2);
    CHECK(text.rfind("connleak: leak: connection 0x200 of pid 10 (api)", 0) == 0);

    // All 20 finished in one interval: one line and one folded line.
    batch = ln.update(snap(5, {}));
    REQUIRE(batch.size() == 20);
    text = nt.render(batch, o);
    CHECK(line_count(text) == 2);
    CHECK(text.find("connleak: released: and 19 more previously reported connections of pid 10 (api) from the same "
                    "site, finished after 31.0 s to 31.9 s\n") != std::string::npos);
}

TEST_CASE("notices fold per site and process, the stack once per site")
{
    LeakNotices ln;
    NoticeText nt;
    NoticeTextOptions o;
    o.frames_shown = 10;  // the whole 3-frame stack
    std::vector<ConnReport> conns = leaks_from("a+0x1 (api)", 0x100, 3);
    for (const ConnReport& c : leaks_from("b+0x1 (api)", 0x200, 1))
        conns.push_back(c);
    Snapshot s = snap(1, conns);
    ProcessReport worker = s.processes[0];  // a forked worker, same site
    worker.pid = 20;
    worker.connections = leaks_from("a+0x1 (api)", 0x300, 2);
    s.processes.push_back(worker);
    std::string text = nt.render(ln.update(s), o);
    // a (pid 10): line + 3 frames + fold; b: line + 3 frames; a (pid 20):
    // line + fold, no stack (shown above).
    CHECK(line_count(text) == 5 + 4 + 2);
    CHECK(text.find("and 2 more connections of pid 10 (api)") != std::string::npos);
    CHECK(text.find("and 1 more connection of pid 20 (api)") != std::string::npos);
    CHECK(text.find("connection 0x300 of pid 20") != std::string::npos);
}

TEST_CASE("--notice-stacks: each notice on its own with its whole stack")
{
    LeakNotices ln;
    NoticeText nt;
    NoticeTextOptions o;
    o.frames_shown = 1;  // --stacks does not cut these
    o.full_stacks = true;
    std::string text = nt.render(ln.update(snap(1, leaks_from("get_users+0x3c (api)", 0x100, 10))), o);
    CHECK(line_count(text) == 10 * (1 + 3));
    CHECK(text.find("more") == std::string::npos);
    text = nt.render(ln.update(snap(2, {})), o);
    CHECK(line_count(text) == 10);  // releases carry no stack
}

TEST_CASE("--stacks 0: notices without frames")
{
    LeakNotices ln;
    NoticeText nt;
    NoticeTextOptions o;
    o.frames_shown = 0;
    std::string text = nt.render(ln.update(snap(1, leaks_from("get_users+0x3c (api)", 0x100, 2))), o);
    CHECK(line_count(text) == 2);
    CHECK(text.find("    ") == std::string::npos);
}

#include "json_output.h"

TEST_CASE("notices and frames in the JSON snapshot")
{
    LeakNotices ln;
    Snapshot s = snap(1795723200, {conn(0xab, 1, 31234, true)});
    SiteReport site;
    site.site = "get_users+0x3c (api)";
    site.frames = s.processes[0].connections[0].frames;
    s.processes[0].sites.push_back(site);
    SiteReport bare;  // no stack collected: no "frames" key
    bare.site = "api+0x1234";
    s.processes[0].sites.push_back(bare);
    auto n = ln.update(s);
    s.notices.assign(ln.recent().begin(), ln.recent().end());
    auto j = snapshot_to_json(s);
    REQUIRE(j["notices"].size() == 1);
    auto& jn = j["notices"][0];
    CHECK(jn["seq"] == 1);
    CHECK(jn["kind"] == "leak");
    CHECK(jn["time"] == "2026-11-26T20:00:00Z");
    CHECK(jn["pid"] == 10);
    CHECK(jn["tid"] == 11);
    CHECK(jn["conn"] == "0xab");
    CHECK(jn["age_ms"] == 31234.0);
    CHECK(jn["site"] == "get_users+0x3c (api)");
    CHECK(jn["frames"].size() == 3);  // the whole stack, whatever --stacks
    CHECK(jn["frames"][2] == "main+0x91 (api)");
    auto& sites = j["processes"][0]["top_connection_users"];
    CHECK(sites[0]["frames"].size() == 3);
    CHECK_FALSE(sites[1].contains("frames"));

    ln.update(snap(1795723202, {}));
    s.notices.assign(ln.recent().begin(), ln.recent().end());
    j = snapshot_to_json(s);
    REQUIRE(j["notices"].size() == 2);
    CHECK(j["notices"][1]["kind"] == "released");
    CHECK(j["notices"][1]["held_ms"] == 31234.0);
    CHECK_FALSE(j["notices"][1].contains("age_ms"));
}

TEST_CASE("a reported leak keeps its thread and pooled flag packed in its row, for its release")
{
    // The row holds the thread in 31 bits beside the pooled flag: the
    // largest thread id Linux gives (PID_MAX_LIMIT, 2^22) comes back whole.
    LeakNotices ln;
    ConnReport c = conn(0xc, 3, 40000, true);
    c.tid = 4194304;
    c.pooled = true;
    c.state_known = true;
    c.idle_ms = 1200;
    auto n1 = ln.update(snap(100, {c}));
    REQUIRE(n1.size() == 1);
    CHECK(n1[0].tid == 4194304);
    CHECK(n1[0].pooled);
    CHECK(n1[0].in_transaction_ms == 1200);
    c.leak = false;  // given back to its pool: out of its transaction
    c.age_ms = 42000;
    auto n2 = ln.update(snap(102, {c}));
    REQUIRE(n2.size() == 1);
    CHECK(n2[0].kind == "released");
    CHECK(n2[0].tid == 4194304);
    CHECK(n2[0].pooled);
    CHECK(n2[0].in_transaction_ms == 1200);
    CHECK(n2[0].age_ms == 42000);
    CHECK(n2[0].conn == 0xc);
    CHECK(n2[0].pid == 10);
}
