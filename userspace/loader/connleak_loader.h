// The kernel side as one object: open -> configure -> load -> attach, and
// reads of the maps. Owns every libbpf object it makes (RAII).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "connleak.h"
#include "event_drain.h"
#include "model.h"
#include "raw_entries.h"
#include "result.h"
#include "tracer_sock_io.h"

struct connleak_bpf;
struct bpf_link;

namespace connleak {

struct TracerConfig {
    bool follow_children = true;
    uint32_t max_conns = 0, max_sites = 0, max_procs = 0;  // 0: defaults of connleak.h
    uint32_t stack_size = CONNLEAK_STACK_SIZE;             // user stack bytes sent per acquisition; 0: no events
    bool trace_all = false;  // --all: a process entering a probed libpq joins the filter (bpf/adopt.bpf.h)
};

// One ring-buffer record (acquire_event or release_event of connleak.h).
using EventHandler = std::function<void(const void* data, size_t size)>;

class Tracer {
public:
    // Opens, sizes and loads the BPF object and attaches the process
    // fork/exit tracepoints. No libpq probe yet.
    static Result<std::unique_ptr<Tracer>> load(const TracerConfig& cfg);
    ~Tracer();
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    // Puts the probes on one libpq file. With no pids, for every process
    // that maps it (the in-kernel filter picks the traced ones: needed to
    // follow children from their first instruction). With pids, in those
    // processes only: the kernel then places no breakpoint in any other
    // process, which pays nothing. A file already probed (same device and
    // inode) is skipped.
    // `stop` is asked between probes: when it says true, attaching ends
    // early (an error; what was attached stays until the Tracer is gone).
    Status attach_libpq(const std::string& path, const std::vector<uint32_t>& pids = {},
                        const std::function<bool()>& stop = {});

    // Adds a process to the in-kernel filter.
    Status trace_process(uint32_t pid);
    // The same, leaving an entry already there (adopted by the kernel, or a
    // forked child's) as it is. Returns whether the pid was new.
    Result<bool> adopt_process(uint32_t pid);

    // One pass over the maps. Kernel clock and wall clock are read with it.
    RawState read() const;

    // Only the process entries: cheap, for noticing exits between reports.
    std::vector<RawProcess> read_processes() const;

    // One process's entry (none if absent), handles and sites, read now.
    RawState read_process(uint32_t pid) const;
    // The same for several processes, each map read once (1,000 processes
    // exiting together: 1,000 reads of the site and stack maps before).
    // Absent processes have no entry.
    std::map<uint32_t, RawState> read_processes_of(const std::vector<uint32_t>& pids) const;

    // Drops exactly these entries (an exited process's, once userspace kept
    // them) from the maps: nothing written after they were read.
    void forget(const RawState& entries);

    // The in-kernel process filter (`procs`), shared with the socket tracer.
    int procs_map_fd() const;
    // Python interpreters' layouts per process (python_layout of connleak.h).
    int python_map_fd() const;
    // The kernel's count of execs of traced processes (python.bpf.h).
    uint64_t traced_execs() const;
    // Moves whenever a process enters the process map (here or in the
    // kernel) or is marked exited (adopt.bpf.h's procs_changes).
    uint64_t procs_changes() const;

    // Teaches the kernel how to step from one return address to its
    // caller's (stack_walk.bpf.h).
    void learn_unwind_step(const unwind_key& key, const unwind_step& step);

    // The release of this handle (if its stack is counted in the kernel)
    // will come as an event too, with its hold time: it was reported.
    void watch_release(uint32_t pid, uint64_t conn, uint64_t acquired_ns);
    // Traffic on libpq's sockets (bpf/sock_io.h; tracer_sock_io.h): the
    // maps the socket tracer fills and reads or shares, and the hooks,
    // attached only with socket tracking. refresh_traffic() before each
    // report (the TCP receive times; sock_ops_sockets false: the socket
    // tracer knows none can need them, SocketTracer::sock_ops_sockets_possible).
    int sock_io_map_fd() const;
    int sock_io_mark_fd() const;
    int sock_io_hooks_fd() const;
    int io_wake_fd() const;
    int sock_io_writes_fd() const;
    int sock_io_cgroups_fd() const;
    // whole_host (--all): the TCP sock_ops program on the cgroup v2 root;
    // else on the cgroups of the processes cover_traffic() is given.
    Status attach_socket_io(bool whole_host);
    void cover_traffic(const std::vector<uint32_t>& pids);
    void cover_traffic(const std::vector<RawProcess>& processes);  // (the exited ones forgotten)
    void detach_socket_io();
    void refresh_traffic(bool sock_ops_sockets = true);
    uint64_t tcp_iterator_runs() const;  // of the TCP iterator refresh_traffic() runs (measurements)
    // Events: a descriptor to poll (-1 without events), and a pass over
    // what is pending, each record handed to `handler`. A thread drains
    // the ring meanwhile (event_drain.h); records it had no room for count
    // in their process's dropped_stacks, as the ring's own drops do.
    int events_fd() const;
    void consume_events(const EventHandler& handler);
    // The most bytes of records that waited in userspace at once.
    size_t event_queue_peak_bytes() const { return events_ ? events_->peak_bytes() : 0; }

private:
    Tracer() = default;
    Status attach(const char* what, bpf_link* link);
    std::vector<RawStack> read_stacks(uint32_t pid) const;  // pid 0: all
    // The records the event drain had no room for, per process; `drain`:
    // the ring emptied first (after the process entries were read).
    std::map<uint32_t, uint64_t> queue_drops(bool drain) const;
    static void add_queue_drops(RawProcess& p, const std::map<uint32_t, uint64_t>& drops);
    // The live-handle map, by key: read again only when the kernel's
    // count of its changes moved (or userspace deleted from it).
    const std::vector<ConnRow>& conn_rows() const;

    connleak_bpf* skel_ = nullptr;
    std::vector<bpf_link*> links_;
    std::set<std::pair<dev_t, ino_t>> probed_files_;
    std::unique_ptr<EventDrain> events_;
    std::unique_ptr<SocketIoHooks> io_hooks_;
    mutable std::vector<ConnRow> conn_rows_;  // by key (tgid, conn)
    mutable uint64_t conn_rows_changes_ = 0;
    uint64_t procs_added_ = 0;  // processes this loader put in the map (procs_changes)
    mutable uint64_t conn_rows_read_ns_ = 0;  // CLOCK_MONOTONIC when they were read
    mutable bool conn_rows_valid_ = false;
};

}  // namespace connleak
