// Unwinder: DWARF CFI unwinding of a copied stack, on this test binary's own
// stack (built -O2, so without frame pointers), and StackTable's site rule.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "connleak.h"
#include "proc_maps.h"
#include "stack_table.h"
#include "symbolizer.h"
#include "unwinder.h"

using namespace connleak;

namespace {

volatile int g_sink;

struct Captured {
    UnwindInput in;
    std::vector<uint8_t> stack;
};

// The bytes of this thread's stack from sp up, frames of callers included:
// under ASan their redzones are read too, on purpose (the kernel copies them
// the same way), so this one copy is not checked. A volatile byte loop, as a
// memcpy would still go through ASan's interceptor.
__attribute__((no_sanitize("address"), noinline)) std::vector<uint8_t> copy_raw_stack(uint64_t sp, size_t n)
{
    std::vector<uint8_t> out(n);
    const volatile uint8_t* src = reinterpret_cast<const volatile uint8_t*>(sp);
    for (size_t i = 0; i < n; i++)
        out[i] = src[i];
    return out;
}

// Takes this thread's registers (DWARF order) and a copy of its stack from
// sp up, the way the kernel side does at an acquisition.
__attribute__((noinline)) void capture(Captured& out, size_t max_bytes)
{
    uint64_t* r = out.in.regs;
    asm volatile("movq %%rax, 0(%0)\n\t"
                 "movq %%rdx, 8(%0)\n\t"
                 "movq %%rcx, 16(%0)\n\t"
                 "movq %%rbx, 24(%0)\n\t"
                 "movq %%rsi, 32(%0)\n\t"
                 "movq %%rdi, 40(%0)\n\t"
                 "movq %%rbp, 48(%0)\n\t"
                 "movq %%rsp, 56(%0)\n\t"
                 "movq %%r8, 64(%0)\n\t"
                 "movq %%r9, 72(%0)\n\t"
                 "movq %%r10, 80(%0)\n\t"
                 "movq %%r11, 88(%0)\n\t"
                 "movq %%r12, 96(%0)\n\t"
                 "movq %%r13, 104(%0)\n\t"
                 "movq %%r14, 112(%0)\n\t"
                 "movq %%r15, 120(%0)\n\t"
                 "leaq 0(%%rip), %%rax\n\t"
                 "movq %%rax, 128(%0)\n\t"
                 :
                 : "r"(r)
                 : "rax", "memory");
    out.in.pid = static_cast<uint32_t>(getpid());
    out.in.tid = static_cast<uint32_t>(gettid());
    const uint64_t sp = r[7];
    auto maps = read_maps(out.in.pid);
    REQUIRE(maps);
    const Mapping* m = find_mapping(*maps, sp);
    REQUIRE(m);
    size_t n = std::min<uint64_t>(max_bytes, m->end - sp);
    out.stack = copy_raw_stack(sp, n);
    out.in.stack = out.stack.data();
    out.in.stack_len = out.stack.size();
}

__attribute__((noinline)) void level3(Captured& out, size_t max_bytes)
{
    capture(out, max_bytes);
    g_sink = g_sink + 1;  // no tail calls: each level keeps its frame
}

__attribute__((noinline)) void level2(Captured& out, size_t max_bytes)
{
    level3(out, max_bytes);
    g_sink = g_sink + 2;
}

__attribute__((noinline)) void level1(Captured& out, size_t max_bytes)
{
    level2(out, max_bytes);
    g_sink = g_sink + 3;
}

std::vector<std::string> names(Unwinder& u, const UnwindResult& r, uint32_t pid)
{
    Symbolizer sym;
    std::vector<std::string> out;
    for (const UnwoundFrame& f : r.frames) {
        if (!f.mapping) {
            out.push_back("?");
            continue;
        }
        out.push_back(sym.name(path_in_target(pid, *f.mapping), "", f.file_offset));
    }
    (void)u;
    return out;
}

bool has_prefix(const std::string& s, const std::string& p)
{
    return s.compare(0, p.size(), p) == 0;
}

// "file.c:42" of the call before a frame's return address.
std::string source_of(uint32_t pid, const UnwoundFrame& f)
{
    REQUIRE(f.mapping);
    Symbolizer sym;
    return sym.frame(NativeFile{path_in_target(pid, *f.mapping), ""}, f.file_offset, true).source;
}

}  // namespace

TEST_CASE("unwinds this test's own stack without frame pointers")
{
    Captured c;
    level1(c, 64 * 1024);
    Unwinder u;
    UnwindResult r = u.unwind(c.in);
    auto n = names(u, r, c.in.pid);
    INFO("error: " << r.error);
    for (const std::string& s : n)
        INFO(s);
    REQUIRE(n.size() >= 5);
    CHECK(n[0].find("capture") != std::string::npos);
    CHECK(n[1].find("level3") != std::string::npos);
    CHECK(n[2].find("level2") != std::string::npos);
    CHECK(n[3].find("level1") != std::string::npos);
    // On through Catch2 to main and libc's start.
    bool main_seen = false;
    for (const std::string& s : n)
        main_seen = main_seen || has_prefix(s, "main+");
    CHECK(main_seen);
    CHECK(r.complete);
    CHECK(has_prefix(n.back(), "_start+"));
    // file:line from this binary's DWARF (RelWithDebInfo).
    CHECK(source_of(c.in.pid, r.frames[1]).find("test_unwinder.cpp:") == 0);
    CHECK(u.build_id(c.in.pid, r.frames[1].pc).size() == 40);
}

// A forked child that waits, its mappings untouched, until the test ends.
class WaitingChild {
public:
    WaitingChild()
    {
        REQUIRE(pipe(go_) == 0);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            char b;
            close(go_[1]);
            (void)!read(go_[0], &b, 1);
            _exit(0);
        }
        close(go_[0]);
    }
    ~WaitingChild()
    {
        close(go_[1]);
        waitpid(pid_, nullptr, 0);
    }
    uint32_t pid() const { return static_cast<uint32_t>(pid_); }

private:
    int go_[2] = {-1, -1};
    pid_t pid_ = -1;
};

TEST_CASE("a forked process with the same mappings shares the unwinding session")
{
    WaitingChild child;
    Captured c;
    level1(c, 64 * 1024);
    Unwinder u;
    UnwindResult mine = u.unwind(c.in);
    // The child's copy of this stack: same bytes, same addresses.
    UnwindInput theirs = c.in;
    theirs.pid = child.pid();
    UnwindResult r = u.unwind(theirs);
    CHECK(u.session_count() == 1);
    CHECK(r.complete);
    REQUIRE(r.frames.size() == mine.frames.size());
    for (size_t i = 0; i < r.frames.size(); i++)
        CHECK(r.frames[i].pc == mine.frames[i].pc);
    CHECK(source_of(theirs.pid, r.frames[1]).find("test_unwinder.cpp:") == 0);
    u.forget(c.in.pid);
    CHECK(u.session_count() == 1);  // the child still uses it
    u.forget(theirs.pid);
    CHECK(u.session_count() == 0);
}

TEST_CASE("processes with the same file mappings share one copy of them, and only file mappings are kept")
{
    WaitingChild child;
    const uint32_t self = static_cast<uint32_t>(getpid()), other = child.pid();
    Unwinder u;
    u.look_at(self);
    u.look_at(other);
    const std::vector<Mapping>* mine = u.maps(self);
    const std::vector<Mapping>* theirs = u.maps(other);
    REQUIRE(mine);
    REQUIRE(theirs);
    CHECK(mine == theirs);  // one copy: 1,000 forked workers hold ~30 KB, not ~30 MB
    CHECK(!mine->empty());
    for (const Mapping& m : *mine)
        CHECK((m.inode != 0 && !m.path.empty() && m.path[0] == '/'));
    u.forget(self);
    CHECK(u.maps(other) == theirs);  // still the child's
    u.forget(other);
    CHECK(u.maps(other) == nullptr);
}

// The kernel's walk (bpf/stack_walk.bpf.h) over a copy of the stack: from
// each return address, the step learnt from the CFI to the next one.
std::vector<uint64_t> walk_with_steps(Unwinder& u, const Captured& c, uint64_t first_pc, size_t max, bool& outermost)
{
    uint64_t pc = first_pc, sp = c.in.regs[7], bp = c.in.regs[6];
    std::vector<uint64_t> pcs;
    outermost = false;
    auto read = [&](uint64_t addr, uint64_t& v) {
        if (addr < c.in.regs[7])
            return false;
        const uint64_t off = addr - c.in.regs[7];
        if (off + 8 > c.in.stack_len)
            return false;
        std::memcpy(&v, c.in.stack + off, 8);
        return true;
    };
    for (size_t i = 0; i < max; i++) {
        pcs.push_back(pc);
        // Frame 0 is not at a return address: its own instruction is pc.
        FrameStep st = u.step_at(c.in.pid, i == 0 ? pc + 1 : pc);
        if (!st.known)
            break;
        if (st.outermost) {
            outermost = true;
            break;
        }
        const uint64_t cfa = (st.cfa_rbp ? bp : sp) + static_cast<int64_t>(st.cfa_offset);
        uint64_t ra = 0;
        if (!read(cfa - 8, ra))
            break;
        if (st.rbp_offset && !read(cfa + st.rbp_offset, bp))
            break;
        sp = cfa;
        pc = ra;
    }
    return pcs;
}

TEST_CASE("the steps learnt from the CFI walk the stack to the same return addresses as libdwfl")
{
    Captured c;
    level1(c, 64 * 1024);
    Unwinder u;
    UnwindResult r = u.unwind(c.in);
    REQUIRE(r.complete);
    std::vector<uint64_t> want;
    for (const UnwoundFrame& f : r.frames)
        want.push_back(f.pc);
    bool outermost = false;
    std::vector<uint64_t> got = walk_with_steps(u, c, want[0], 128, outermost);
    CHECK(got == want);
    CHECK(outermost);

    // Frames named from return addresses alone (what the kernel sends)
    // are the frames unwound.
    UnwindResult named = u.frames_at(c.in.pid, got.data(), got.size(), true);
    REQUIRE(named.frames.size() == r.frames.size());
    for (size_t i = 0; i < got.size(); i++) {
        CHECK(named.frames[i].file_offset == r.frames[i].file_offset);
        CHECK(named.frames[i].mapping != nullptr);
    }
}

TEST_CASE("no step for an address outside every module")
{
    Captured c;
    level1(c, 4096);
    Unwinder u;
    u.unwind(c.in);
    CHECK_FALSE(u.step_at(c.in.pid, 0x10).known);
    CHECK_FALSE(u.step_at(0x7ffffff0, c.in.regs[16]).known);
}

TEST_CASE("a short copy gives a truncated stack, not garbage")
{
    Captured c;
    level1(c, 64 * 1024);
    c.in.stack_len = 16;  // less than capture's own frame
    Unwinder u;
    UnwindResult r = u.unwind(c.in);
    CHECK_FALSE(r.complete);
    CHECK_FALSE(r.error.empty());
    REQUIRE(r.frames.size() >= 1);
    CHECK(r.frames[0].pc == c.in.regs[16]);
    CHECK(r.frames.size() <= 2);
}

TEST_CASE("max_frames bounds the unwinding")
{
    Captured c;
    level1(c, 64 * 1024);
    UnwinderOptions o;
    o.max_frames = 3;
    Unwinder u(o);
    UnwindResult r = u.unwind(c.in);
    CHECK(r.frames.size() == 3);
    CHECK_FALSE(r.complete);
}

TEST_CASE("an unknown process gives one frame and an error")
{
    UnwindInput in;
    in.pid = 0x7ffffff0;
    in.tid = in.pid;
    in.regs[16] = 0x1234;
    Unwinder u;
    UnwindResult r = u.unwind(in);
    REQUIRE(r.frames.size() == 1);
    CHECK(r.frames[0].pc == 0x1234);
    CHECK(r.frames[0].mapping == nullptr);
    CHECK_FALSE(r.complete);
}

TEST_CASE("the site is the first frame outside libpq and glue")
{
    std::vector<std::regex> skip;
    for (const std::string& s : StackOptions::default_site_skip())
        skip.emplace_back(s);
    std::vector<std::string> frames = {
        "PQconnectdb+0x12 (libpq.so.5)",
        "pqxx::connection::connection()+0x40 (libpqxx-6.4.so)",
        "db_open+0x9 (app) glue.c:10",
        "repo_a+0xc (app) repo.c:22",
        "main+0x10 (app)",
    };
    CHECK(StackTable::site_index(frames, skip) == 2);
    skip.emplace_back(R"(^db_open\+)");
    CHECK(StackTable::site_index(frames, skip) == 3);
    // A pattern sees the name without file:line.
    skip.emplace_back(R"(repo\.c)");
    CHECK(StackTable::site_index(frames, skip) == 3);
    // Everything glue: the innermost frame.
    CHECK(StackTable::site_index({"PQconnectdb+0x12 (libpq.so.5)"}, skip) == 0);
    CHECK(StackTable::site_index({}, skip) == 0);
}

TEST_CASE("the C runtime's entry frames get no file:line lookup")
{
    CHECK(StackTable::is_runtime_entry("__libc_start_call_main+0x7a (libc.so.6)"));
    CHECK(StackTable::is_runtime_entry("__libc_start_main+0x85 (libc.so.6)"));
    CHECK(StackTable::is_runtime_entry("start_thread+0x305 (libc.so.6)"));
    CHECK(StackTable::is_runtime_entry("clone3+0x2c (libc.so.6)"));
    CHECK(StackTable::is_runtime_entry("_start+0x21 (app)"));
    // Only whole names: the app's own functions keep their lines.
    CHECK_FALSE(StackTable::is_runtime_entry("start_threads+0x10 (app)"));
    CHECK_FALSE(StackTable::is_runtime_entry("main+0x10 (app)"));
    CHECK_FALSE(StackTable::is_runtime_entry("app+0x9051"));
    CHECK_FALSE(StackTable::is_runtime_entry("0x7f00dead"));
}

TEST_CASE("stacks the kernel counted split their site; what they do not explain stays on it")
{
    Captured c;
    level1(c, 64 * 1024);
    Unwinder u;
    UnwindResult r = u.unwind(c.in);
    REQUIRE(r.complete);
    const uint32_t pid = c.in.pid;
    const uint64_t site = r.frames[0].pc;

    auto e = std::make_unique<stack_event>();
    std::memset(e.get(), 0, sizeof(*e));
    e->kind = EVENT_STACK;
    e->tgid = pid;
    e->stack = 42;
    e->site = site;
    for (const UnwoundFrame& f : r.frames)
        e->pcs[e->pc_count++] = f.pc;
    StackTable table;
    table.on_event(e.get(), sizeof(*e));

    RawState raw;
    RawProcess p;
    p.pid = pid;
    raw.processes.push_back(p);
    RawSite s;
    s.pid = pid;
    s.site = SiteKey::caller(site);
    s.stats.acquired = 10;
    s.stats.released = 7;
    s.stats.hold_ns_total = 700;
    s.stats.hold_ns_max = 300;
    raw.sites.push_back(s);
    RawStack k;
    k.pid = pid;
    k.stack = 42;
    k.stats.acquired = 8;
    k.stats.released = 6;
    k.stats.hold_ns_total = 600;
    k.stats.hold_ns_max = 100;
    k.caller_site = site;
    raw.stacks.push_back(k);
    k.stack = 43;  // its event never came: stays on the site
    k.stats.acquired = 1;
    k.stats.released = 0;
    raw.stacks.push_back(k);
    RawConn live;
    live.pid = pid;
    live.conn = 0x1000;
    live.info.stack = 42;
    live.site = SiteKey::caller(site);
    raw.conns.push_back(live);

    table.refine(raw);
    REQUIRE(raw.sites.size() == 2);
    const RawSite& stack = raw.sites[0].site.kind == SiteKey::Kind::stack ? raw.sites[0] : raw.sites[1];
    const RawSite& rest = raw.sites[0].site.kind == SiteKey::Kind::stack ? raw.sites[1] : raw.sites[0];
    CHECK(stack.stats.acquired == 8);
    CHECK(stack.stats.released == 6);
    CHECK(stack.stats.hold_ns_total == 600);
    CHECK(stack.stats.hold_ns_max == 100);
    CHECK(rest.site == SiteKey::caller(site));
    CHECK(rest.stats.acquired == 2);
    CHECK(rest.stats.released == 1);
    CHECK(rest.stats.hold_ns_total == 100);
    CHECK(raw.conns[0].site == stack.site);
    CHECK(raw.processes[0].stacks_unwound == 8);
    REQUIRE(table.frames(stack.site));
    CHECK(table.frames(stack.site)->size() == r.frames.size());
    CHECK(table.frames(stack.site)->at(1).find("level3") != std::string::npos);
}
