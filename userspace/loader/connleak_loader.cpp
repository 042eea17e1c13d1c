#include "connleak_loader.h"

#include <algorithm>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf_util.h"
#include "clock.h"
#include "connleak.skel.h"
#include "raw_entries.h"
#include "symbolizer.h"
#include "tracer_sock_io.h"

namespace connleak {
namespace {

bool conn_key_less(const conn_key& a, const conn_key& b)
{
    return a.tgid != b.tgid ? a.tgid < b.tgid : a.conn < b.conn;
}
bool site_key_less(const site_key& a, const site_key& b)
{
    return a.tgid != b.tgid ? a.tgid < b.tgid : a.site < b.site;
}
bool stack_key_less(const stack_key& a, const stack_key& b)
{
    return a.tgid != b.tgid ? a.tgid < b.tgid : a.stack < b.stack;
}
bool u32_less(const __u32& a, const __u32& b)
{
    return a < b;
}

// Whole --stack-size copies the event ring holds at least (Tracer::load).
constexpr size_t kRingCopies = 64;

// The libpq entry points and what each probe does there.
struct Probe {
    const char* function;
    bool retprobe;
    bpf_program* decltype(connleak_bpf::progs)::*prog;  // which program handles it
};

// PQfinish opens with `test %rdi,%rdi; je` (48 85 ff 74 xx). The kernel
// cannot emulate `test`, so a probe there is single-stepped: a second trap
// on every call (~14 us on this VM, measured in bench/). Five bytes in, rdi
// still holds the handle and a NULL one has jumped away (ignored anyway).
uint64_t finish_probe_offset(const std::string& path)
{
    SymbolizerOptions no_debug;
    no_debug.use_debug_files = false;
    std::optional<uint64_t> start = Symbolizer(no_debug).function_offset(path, "PQfinish");
    if (!start)
        return 0;
    unsigned char code[4] = {};
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    const bool read_all = pread(fd, code, sizeof(code), static_cast<off_t>(*start)) == sizeof(code);
    close(fd);
    return read_all && code[0] == 0x48 && code[1] == 0x85 && code[2] == 0xff && code[3] == 0x74 ? 5 : 0;
}

}  // namespace

Result<std::unique_ptr<Tracer>> Tracer::load(const TracerConfig& cfg)
{
    std::unique_ptr<Tracer> t(new Tracer());
    t->skel_ = connleak_bpf__open();
    if (!t->skel_)
        return Error{"cannot open the BPF object: " + bpf_errstr(errno)};
    t->skel_->rodata->follow_children = cfg.follow_children;
    if (cfg.max_conns) {
        bpf_map__set_max_entries(t->skel_->maps.conns, cfg.max_conns);
        bpf_map__set_max_entries(t->skel_->maps.inherited, cfg.max_conns);
    }
    if (cfg.max_sites) {
        bpf_map__set_max_entries(t->skel_->maps.sites, cfg.max_sites);
        bpf_map__set_max_entries(t->skel_->maps.stack_counts, cfg.max_sites);
    }
    if (cfg.max_procs) {
        bpf_map__set_max_entries(t->skel_->maps.procs, cfg.max_procs);
        bpf_map__set_max_entries(t->skel_->maps.python_procs, cfg.max_procs);
    }
    t->skel_->rodata->stack_size = cfg.stack_size;
    t->skel_->rodata->trace_all = cfg.trace_all;
    t->skel_->rodata->self_tgid = static_cast<__u32>(getpid());
    // The ring's data pages are mapped into connleak twice (a record that
    // wraps reads as one), every page counted in its RSS from the start: a
    // MiB of ring is 2 MB of RSS, used or not. It carries a copy of the
    // stack until userspace has learnt a stack's return addresses: a burst
    // at a process's start, then rare; and each stack walked once, Python
    // code objects, last-use copies. A thread empties it into userspace
    // (event_drain.h); the ring covers the time that thread waits for a
    // CPU: 1 MiB still overflowed under load with it, 4 MiB did not.
    // 4 MiB, more for a --stack-size of which 64 whole copies would not fit
    // (a power of two of pages, as ring buffers need). Without stacks
    // nothing reads it: a page, for the few events still sent.
    size_t ring = cfg.stack_size ? CONNLEAK_EVENTS_SIZE : 4096;
    while (cfg.stack_size && ring < kRingCopies * (sizeof(acquire_event) + size_t{cfg.stack_size}))
        ring *= 2;
    bpf_map__set_max_entries(t->skel_->maps.events, ring);
    keep_socket_io_if_supported(t->skel_);
    if (int err = connleak_bpf__load(t->skel_))
        return Error{"cannot load the BPF programs: " + bpf_errstr(err) + " (run with --verbose for the verifier log)"};
    if (auto s = t->attach("tp_btf/sched_process_fork", bpf_program__attach(t->skel_->progs.handle_fork)); !s)
        return s.error();
    if (auto s = t->attach("tp_btf/sched_process_exit", bpf_program__attach(t->skel_->progs.handle_exit)); !s)
        return s.error();
    if (auto s = t->attach("tp_btf/sched_process_exec", bpf_program__attach(t->skel_->progs.python_exec)); !s)
        return s.error();
    if (cfg.stack_size) {
        // Room in userspace for 16 rings' worth of records waiting to be
        // handled: a burst of copies while a new process's first stacks
        // are unwound, freed once handled.
        auto d = EventDrain::open(bpf_map__fd(t->skel_->maps.events), 16 * ring);
        if (!d)
            return d.error();
        t->events_ = std::move(d.value());
    }
    return t;
}

Tracer::~Tracer()
{
    io_hooks_.reset();  // its thread attaches this object's programs
    events_.reset();
    destroy_links(links_);
    connleak_bpf__destroy(skel_);
}

Status Tracer::attach(const char* what, bpf_link* link)
{
    if (!link)
        return Error{std::string("cannot attach ") + what + ": " + bpf_errstr(errno)};
    links_.push_back(link);
    return Ok{};
}

Status Tracer::attach_libpq(const std::string& path, const std::vector<uint32_t>& pids,
                            const std::function<bool()>& stop)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        return Error{"cannot use libpq " + path + ": " + bpf_errstr(errno)};
    if (!probed_files_.insert({st.st_dev, st.st_ino}).second)
        return Ok{};

    using P = decltype(connleak_bpf::progs);
    static const Probe probes[] = {
        // Acquisitions: entry notes the outermost call, return counts it.
        // Each return probe goes in before its entry probe: a call entered
        // between the two would otherwise leave its thread's entry behind
        // with no return to clear it (and every later call on that thread
        // would look nested, uncounted).
        {"PQconnectdb", true, &P::call_exit},
        {"PQconnectdb", false, &P::connect_enter},
        {"PQconnectdbParams", true, &P::call_exit},
        {"PQconnectdbParams", false, &P::connect_enter},
        {"PQconnectStart", true, &P::call_exit},
        {"PQconnectStart", false, &P::connect_enter},
        {"PQconnectStartParams", true, &P::call_exit},
        {"PQconnectStartParams", false, &P::connect_enter},
        {"PQsetdbLogin", true, &P::call_exit},
        {"PQsetdbLogin", false, &P::connect_enter},
        // Pings open and finish a handle of their own: not the app's.
        {"PQping", true, &P::call_exit},
        {"PQping", false, &P::ping_enter},
        {"PQpingParams", true, &P::call_exit},
        {"PQpingParams", false, &P::ping_enter},
        {"PQfinish", false, &P::finish_enter},
        {"PQreset", false, &P::reset_enter},
        {"PQresetStart", false, &P::reset_enter},
    };
    const uint64_t finish_offset = finish_probe_offset(path);
    for (pid_t pid : probe_pids(pids))
        for (const Probe& p : probes) {
            if (stop && stop())
                return Error{"attaching " + path + " interrupted"};
            LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = p.retprobe, .func_name = p.function);
            // With func_name, libbpf takes the offset from the function's start.
            const uint64_t offset = std::strcmp(p.function, "PQfinish") == 0 ? finish_offset : 0;
            bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.*p.prog, pid, path.c_str(), offset, &opts);
            std::string what = std::string(p.retprobe ? "uretprobe " : "uprobe ") + p.function + " in " + path;
            if (pid >= 0)
                what += " for process " + std::to_string(pid);
            // libbpf says ENOENT for a function the file does not define.
            if (!link && errno == ENOENT)
                return Error{"cannot attach " + what + ": " + path + " defines no " + p.function + " (is it libpq?)"};
            if (!link && errno == ESRCH && pid >= 0)
                return Error{"cannot attach " + what + ": the process is gone"};
            if (auto s = attach(what.c_str(), link); !s)
                return s;
        }
    return Ok{};
}

Status Tracer::trace_process(uint32_t pid)
{
    proc_stats zero{};
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.procs), &pid, &zero, BPF_ANY) != 0) {
        if (errno == E2BIG)  // the map's answer when full
            return Error{"cannot trace process " + std::to_string(pid) + ": the process map is full (" +
                         std::to_string(bpf_map__max_entries(skel_->maps.procs)) + " entries); raise --max-procs"};
        return Error{"cannot trace process " + std::to_string(pid) + ": " + bpf_errstr(errno)};
    }
    procs_added_++;
    return Ok{};
}

Result<bool> Tracer::adopt_process(uint32_t pid)
{
    proc_stats zero{};
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.procs), &pid, &zero, BPF_NOEXIST) == 0) {
        procs_added_++;
        return true;
    }
    if (errno == EEXIST)
        return false;
    if (errno == E2BIG)
        return Error{"cannot trace process " + std::to_string(pid) + ": the process map is full (" +
                     std::to_string(bpf_map__max_entries(skel_->maps.procs)) + " entries); raise --max-procs"};
    return Error{"cannot trace process " + std::to_string(pid) + ": " + bpf_errstr(errno)};
}

void Tracer::add_queue_drops(RawProcess& p, const std::map<uint32_t, uint64_t>& drops)
{
    if (auto it = drops.find(p.pid); it != drops.end())
        p.stats.dropped_stacks += it->second;
}

std::map<uint32_t, uint64_t> Tracer::queue_drops(bool drain) const
{
    if (!events_)
        return {};
    if (drain)  // what an exited process left in the ring: its count is then final
        events_->drain_now();
    return events_->dropped();
}

std::vector<RawProcess> Tracer::read_processes() const
{
    std::vector<RawProcess> out;
    for (auto& [pid, stats] : dump_map<__u32, proc_stats>(bpf_map__fd(skel_->maps.procs), u32_less))
        out.push_back(raw_process(pid, stats));
    const auto drops = queue_drops(false);
    for (RawProcess& p : out)
        add_queue_drops(p, drops);
    return out;
}

const std::vector<ConnRow>& Tracer::conn_rows() const
{
    // The count first, then the map: the kernel bumps it after each change
    // is made, so a change the read missed leaves the count moved.
    const uint64_t changes = __atomic_load_n(&skel_->bss->conns_changes, __ATOMIC_ACQUIRE);
    if (!conn_rows_valid_ || changes != conn_rows_changes_) {
        conn_rows_read_ns_ = monotonic_ns();
        // Kept until the next change: compact rows, made at their number
        // (without the batches' doubling room).
        const auto rows = dump_map<conn_key, conn_info>(bpf_map__fd(skel_->maps.conns), conn_key_less);
        conn_rows_.clear();
        conn_rows_.shrink_to_fit();
        conn_rows_.reserve(rows.size());
        for (const auto& [k, v] : rows)
            conn_rows_.push_back(conn_row(k, v));
        conn_rows_changes_ = changes;
        conn_rows_valid_ = true;
    }
    return conn_rows_;
}

RawState Tracer::read() const
{
    RawState raw;
    raw.processes = read_processes();
    const auto& rows = conn_rows();
    raw.conns.reserve(rows.size());
    for (const ConnRow& r : rows)
        raw.conns.push_back(raw_conn(r));
    // Stacks before sites: the kernel counts a site first, its stack then.
    raw.stacks = read_stacks(0);
    for (auto& [k, v] : dump_map<site_key, site_stats>(bpf_map__fd(skel_->maps.sites), site_key_less))
        raw.sites.push_back(raw_site(k, v));
    // Read after the maps: every handle then looks at least as old as it is.
    raw.now_ns = monotonic_ns();
    raw.wall_time_s = static_cast<int64_t>(time(nullptr));
    return raw;
}

std::vector<RawStack> Tracer::read_stacks(uint32_t pid) const
{
    std::vector<RawStack> out;
    for (auto& [k, v] : dump_map<stack_key, stack_stats>(bpf_map__fd(skel_->maps.stack_counts), stack_key_less))
        if (!pid || k.tgid == pid)
            out.push_back(raw_stack(k, v));
    return out;
}

void Tracer::learn_unwind_step(const unwind_key& key, const unwind_step& step)
{
    bpf_map_update_elem(bpf_map__fd(skel_->maps.unwind_steps), &key, &step, BPF_ANY);
}

void Tracer::watch_release(uint32_t pid, uint64_t conn, uint64_t acquired_ns)
{
    conn_key k{};
    k.tgid = pid;
    k.conn = conn;
    __u64 v = acquired_ns;
    bpf_map_update_elem(bpf_map__fd(skel_->maps.release_watch), &k, &v,
                        BPF_ANY);  // full: its hold is the last age seen
    // From now on PQfinish looks in release_watch (before: never, a lookup
    // saved per release). Set after the entry: its release cannot slip by.
    __atomic_store_n(&skel_->bss->release_watch_used, 1, __ATOMIC_RELEASE);
}

int Tracer::events_fd() const
{
    return events_ ? events_->fd() : -1;
}

void Tracer::consume_events(const EventHandler& handler)
{
    if (!events_)
        return;
    events_->handle(handler);
}

int Tracer::procs_map_fd() const
{
    return bpf_map__fd(skel_->maps.procs);
}

int Tracer::python_map_fd() const
{
    return bpf_map__fd(skel_->maps.python_procs);
}

uint64_t Tracer::traced_execs() const
{
    return __atomic_load_n(&skel_->bss->traced_execs, __ATOMIC_ACQUIRE);
}

uint64_t Tracer::procs_changes() const
{
    return __atomic_load_n(&skel_->bss->procs_changes, __ATOMIC_ACQUIRE) + procs_added_;
}

RawState Tracer::read_process(uint32_t pid) const
{
    RawState raw;
    proc_stats stats{};
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.procs), &pid, &stats) != 0)
        return raw;
    raw.processes.push_back(raw_process(pid, stats));
    add_queue_drops(raw.processes.back(), queue_drops(true));
    // After the process entry: if it is exited, these are final too. So
    // are rows read after its exit, whatever other processes did since.
    const bool final_rows = stats.exited_ns && conn_rows_valid_ && conn_rows_read_ns_ > stats.exited_ns;
    for (const ConnRow& r : final_rows ? conn_rows_ : conn_rows())
        if (r.tgid == pid)
            raw.conns.push_back(raw_conn(r));
    raw.stacks = read_stacks(pid);
    for (auto& [k, v] : dump_map<site_key, site_stats>(bpf_map__fd(skel_->maps.sites), site_key_less))
        if (k.tgid == pid)
            raw.sites.push_back(raw_site(k, v));
    raw.now_ns = monotonic_ns();
    return raw;
}

std::map<uint32_t, RawState> Tracer::read_processes_of(const std::vector<uint32_t>& pids) const
{
    std::map<uint32_t, RawState> out;
    bool all_final = conn_rows_valid_;
    for (uint32_t pid : pids) {
        proc_stats stats{};
        if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.procs), &pid, &stats) != 0)
            continue;
        out[pid].processes.push_back(raw_process(pid, stats));
        all_final = all_final && stats.exited_ns && conn_rows_read_ns_ > stats.exited_ns;
    }
    if (out.empty())
        return out;
    const auto drops = queue_drops(true);
    for (auto& [pid, raw] : out)
        add_queue_drops(raw.processes.front(), drops);
    // After the process entries, as in read_process().
    for (const ConnRow& r : all_final ? conn_rows_ : conn_rows())
        if (auto it = out.find(r.tgid); it != out.end())
            it->second.conns.push_back(raw_conn(r));
    for (auto& [k, v] : dump_map<stack_key, stack_stats>(bpf_map__fd(skel_->maps.stack_counts), stack_key_less))
        if (auto it = out.find(k.tgid); it != out.end())
            it->second.stacks.push_back(raw_stack(k, v));
    for (auto& [k, v] : dump_map<site_key, site_stats>(bpf_map__fd(skel_->maps.sites), site_key_less))
        if (auto it = out.find(k.tgid); it != out.end())
            it->second.sites.push_back(raw_site(k, v));
    const uint64_t now = monotonic_ns();
    for (auto& [pid, raw] : out)
        raw.now_ns = now;
    return out;
}

void Tracer::forget(const RawState& entries)
{
    for (const RawProcess& p : entries.processes) {
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.procs), &p.pid);
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.python_procs), &p.pid);
        if (events_)
            events_->forget(p.pid);
    }
    std::vector<conn_key> gone;
    for (const RawConn& c : entries.conns) {
        conn_key k{};
        k.tgid = c.pid;
        k.conn = c.conn;
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.conns), &k);
        gone.push_back(k);
    }
    // Userspace's own deletes (the kernel's count does not see them) leave
    // the rows kept without those keys: many processes exiting at once then
    // cost one read of the map, not one each.
    if (!gone.empty() && conn_rows_valid_) {
        std::sort(gone.begin(), gone.end(), conn_key_less);
        auto deleted = [&](const ConnRow& row) {
            conn_key k{};
            k.tgid = row.tgid;
            k.conn = row.conn;
            return std::binary_search(gone.begin(), gone.end(), k, conn_key_less);
        };
        conn_rows_.erase(std::remove_if(conn_rows_.begin(), conn_rows_.end(), deleted), conn_rows_.end());
    }
    for (const RawSite& s : entries.sites) {
        if (s.site.kind != SiteKey::Kind::caller)  // userspace's own keys are not in the map
            continue;
        site_key k{};
        k.tgid = s.pid;
        k.site = s.site.value;
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.sites), &k);
    }
    for (const RawStack& s : entries.stacks) {
        stack_key k{};
        k.tgid = s.pid;
        k.stack = s.stack;
        bpf_map_delete_elem(bpf_map__fd(skel_->maps.stack_counts), &k);
    }
    // Handles an exited child inherited and never finished: nothing can
    // finish them any more.
    if (!entries.processes.empty())
        for (auto& [k, v] : dump_map<conn_key, uint8_t>(bpf_map__fd(skel_->maps.inherited), conn_key_less))
            for (const RawProcess& p : entries.processes)
                if (k.tgid == p.pid)
                    bpf_map_delete_elem(bpf_map__fd(skel_->maps.inherited), &k);
    // Leaks it never released.
    if (!entries.processes.empty())
        for (auto& [k, v] : dump_map<conn_key, __u64>(bpf_map__fd(skel_->maps.release_watch), conn_key_less))
            for (const RawProcess& p : entries.processes)
                if (k.tgid == p.pid)
                    bpf_map_delete_elem(bpf_map__fd(skel_->maps.release_watch), &k);
}

}  // namespace connleak
