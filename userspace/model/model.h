// The pure model: raw map contents in, a report (Snapshot) out.
// No kernel, no files, no terminal here, so every rule of the report is
// unit-testable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "defaults.h"
#include "libpq_handle.h"
#include "server_join.h"
#include "shared_map.h"
#include "shared_text.h"
#include "socket_model.h"

namespace connleak {

// What the kernel counted for one traced process (the loader copies it
// from the BPF procs map; the model never sees BPF types).
struct ProcessCounts {
    uint64_t acquired = 0;            // PGconn handed to the application
    uint64_t released = 0;            // PQfinish of a handle seen acquired
    uint64_t released_untracked = 0;  // PQfinish of a handle never seen acquired
    uint64_t released_inherited = 0;  // PQfinish of a handle inherited at fork
    uint64_t pings = 0;               // PQping/PQpingParams calls (not acquisitions)
    uint64_t resets = 0;              // PQreset/PQresetStart calls (same handle)
    // Map insertions that did not fit, by map (the model sums them):
    uint64_t dropped_conns = 0, dropped_sites = 0, dropped_threads = 0, dropped_children = 0, dropped_inherited = 0;
    uint64_t dropped_stacks = 0;  // stack or release events the ring buffer had no room for
    uint64_t exited_ns = 0;       // CLOCK_MONOTONIC when its last thread exited; 0 while it runs
};

// One traced process as read from the maps (or kept after it exited).
struct RawProcess {
    uint32_t pid = 0;
    std::string comm;
    ProcessCounts stats;                                // stats.exited_ns != 0 once its last thread exited
    uint64_t stacks_unwound = 0, stacks_truncated = 0;  // userspace unwinding (StackTable)
    uint64_t python_stacks = 0, python_truncated = 0;   // with Python frames; cut at the frame bound
    std::string container_id, pod_uid;                  // from its cgroup; "" when none (ContainerLabels)
    uint64_t last_poll_ns = 0;                          // its latest PQconnectPoll entry (handle reads); 0: none
};

// Which site counts belong to: the kernel's (the return address into the
// caller, per process), or one of the stacks StackTable::refine split a
// caller site into. Other kinds of site can join as another Kind.
struct SiteKey {
    enum class Kind : uint8_t { caller, stack, last_use };
    Kind kind = Kind::caller;
    uint64_t value = 0;  // caller: the return address; stack: StackTable's index

    static SiteKey caller(uint64_t return_address) { return {Kind::caller, return_address}; }
    static SiteKey stack(uint64_t index) { return {Kind::stack, index}; }
    // A last user's stack (StackTable's index): names a ConnReport's last user, never a site row.
    static SiteKey last_use(uint64_t index) { return {Kind::last_use, index}; }
    bool operator<(const SiteKey& o) const { return std::tie(kind, value) < std::tie(o.kind, o.value); }
    bool operator==(const SiteKey& o) const { return kind == o.kind && value == o.value; }
};

// When and by whom a live handle was acquired (CLOCK_MONOTONIC ns).
struct Acquisition {
    uint64_t start_ns = 0;     // entry of the outermost connect call
    uint64_t acquired_ns = 0;  // its return: the handle's age counts from here
    uint32_t tid = 0;          // the acquiring thread
    uint64_t stack = 0;        // the kernel's stack id (RawStack::stack) it is counted under; 0: none
};

struct RawConn {
    uint64_t conn = 0;  // the PGconn* in the target's address space
    Acquisition info;
    SiteKey site;  // where the handle is counted
    // Its last user (StackTable, from the send hooks' copies), if seen:
    // the stack (SiteKey::last_use) and the send's time. A use whose stack
    // the kernel walked is on the socket instead (ConnSocket::use_stack).
    SiteKey last_use;
    uint64_t last_use_ns = 0;  // 0: none seen
    uint32_t last_use_tid = 0;
    uint32_t pid = 0;  // beside last_use_tid: 88 bytes, not 96 (100,000 each report at scale)
};

// A site's counts of handles (hold times in ns).
struct SiteCounts {
    uint64_t acquired = 0, released = 0;
    uint64_t hold_ns_total = 0;  // sum of hold times of released handles
    uint64_t hold_ns_max = 0;    // longest hold of a released handle
};

// Where a caller site lies, found by the kernel when it first saw the site,
// so it can be named after the process exited.
struct SiteLocation {
    uint64_t file_offset = 0;  // offset of the site in the mapped file
    uint64_t inode = 0;
    uint32_t dev = 0;    // kernel encoding: major << 20 | minor
    std::string module;  // file name of the mapping; "" when unknown (then named by address)
};

struct RawSite {
    uint32_t pid = 0;
    SiteKey site;
    SiteCounts stats;
    SiteLocation location;
};

// The kernel's counters of one stack it walked itself (stack_counts):
// StackTable folds them into its stacks.
// Counts the kernel keeps per (process, stack id) for stacks it walked.
struct RawStack {
    uint32_t pid = 0;
    uint64_t stack = 0;        // the kernel's stack id
    SiteCounts stats;          // acquisitions and releases under this stack
    uint64_t caller_site = 0;  // the kernel's caller site (return address) the stack belongs to
};

struct ExitedGroup;  // below

using UseStacks = std::map<std::pair<uint32_t, uint64_t>, SiteKey>;

// Everything read in one pass over the maps, plus what userspace kept of
// processes that have exited since.
struct RawState {
    uint64_t now_ns = 0;  // CLOCK_MONOTONIC, same clock as bpf_ktime_get_ns()
    int64_t wall_time_s = 0;
    std::vector<RawProcess> processes;
    std::vector<RawConn> conns;
    std::vector<RawSite> sites;
    std::vector<RawStack> stacks;                     // read before `sites`: a stack's count never exceeds its site's
    bool sockets_tracked = false;                     // the sockets loader ran
    std::map<uint32_t, ProcessSocketReport> sockets;  // by pid
    std::vector<ExitedGroup> exited_folded;           // older exited processes, by comm
    // What each live handle's memory said this interval, by (pid, conn);
    // absent when its libpq's layout is unknown or the read failed. A
    // sorted vector, not a tree: 100,000 nodes at scale were built, walked
    // and freed every report.
    SharedMap<std::pair<uint32_t, uint64_t>, HandleState> handles;
    ServerJoinInput server;  // --server: pg_stat_activity and the sockets to join
    // Last users' stacks the kernel walked: (pid, kernel stack id) to its
    // SiteKey::last_use (StackTable), for ConnSocket::use_stack.
    UseStacks use_stacks;
};

struct ModelOptions {
    double leak_after_s = kDefaultLeakAfterS;
    size_t top_sites = 10;     // sites listed per process
    size_t frames_shown = 10;  // stack frames the text report shows per site
    // Live handles the JSON lists per process, oldest first (--connections).
    size_t connections_shown = kDefaultConnectionsShown;
    // ... and in all processes together, the oldest first (--connections-max).
    size_t connections_listed_max = kDefaultConnectionsListedMax;
    // A handle whose acquiring stack has a frame matching one of these was
    // acquired by a pool (ECMAScript regexes, searched in frame names).
    std::vector<std::string> pool_frames = default_pool_frames();

    static std::vector<std::string> default_pool_frames();
};

// A stack, outermost frame last ("func+0x3c (module) file.c:42").
using Frames = std::shared_ptr<const std::vector<std::string>>;

struct SiteReport {
    std::string site;
    uint64_t acquired = 0, released = 0, active = 0, leaks = 0, leaked_at_exit = 0;
    double avg_ms = 0;                       // mean hold time of released handles
    double max_ms = 0;                       // longest hold, released or still live
    Frames frames = nullptr;                 // null when no stack was collected
    std::map<std::string, uint64_t> states;  // live handles by state ("idle": 2...), known states only
    uint64_t pool_slots_lost = 0;            // pooled handles finished while borrowed (PoolTracker)
};

// One live handle. Its texts are shared with the other rows that repeat
// them (SharedText): a report holds one per live handle.
struct ConnReport {
    // Fields ordered so that none pads: 200 bytes, was 224 (100,000 rows
    // made anew each report at scale, each page of them faulted in again).
    uint64_t conn = 0;
    uint64_t acquired_ns = 0;  // with pid and conn, names one acquisition
    SharedText site;
    double age_ms = 0;
    uint32_t tid = 0;
    // Read from the handle (RawState::handles); state_known false: not read.
    int32_t backend_pid = 0;
    ConnState state = ConnState::unknown;
    bool state_known = false;
    bool leak = false;
    bool pooled = false;      // acquired through a pool's code (ModelOptions::pool_frames)
    bool pre_attach = false;  // made before the attach: known from the server only (conn 0)
    uint32_t last_used_tid = 0;
    Frames frames = nullptr;
    SharedText database, user;
    double state_ms = 0;  // how long it has been in this state, as seen interval by interval
    // Its socket, from the process's socket report; all empty when sockets are not tracked.
    SharedText peer;            // the server it reached; "" when no socket was seen
    // TCP: the client's address:port (kernel record at the handshake, or a
    // scan); else kind None. Formatted by the outputs, for the handles they
    // list: as a string here it was 24 bytes more a row and 100,000
    // formattings a report at scale.
    Peer local;
    SharedText socket;          // "open", "peer_closed", "closed" or "none" (no socket seen)
    uint64_t socket_inode = 0;  // 0 when no socket was seen
    std::shared_ptr<const ServerConn> server = nullptr;  // --server: the server's view, when joined
    // Traffic on its socket (last_user.h): idle time, and the stack that
    // began its current (or latest) unit of work.
    double idle_ms = -1;        // since the last byte sent or received; < 0: not known
    SharedText last_used_site;  // "": not known
    Frames last_used_frames = nullptr;
};

// One last user (ConnReport::last_used_site) of a process's live handles,
// or of the whole host's (by label): last_users.h says how it is counted.
struct LastUserReport {
    std::string site;  // the last user's label; "": not known (no use seen, or its stack not read yet)
    Frames frames = nullptr;
    uint64_t connections = 0;  // live handles it last used
    uint64_t pooled = 0;       // of those, acquired through a pool
    uint64_t checked_out = 0;  // pooled ones it holds borrowed now (last_users.h: checked_out)
    uint64_t leaks = 0;        // leaks among them: a pooled one's is charged to its last user
};

struct ProcessReport {
    uint32_t pid = 0;
    std::string comm;
    bool exited = false;
    uint64_t acquired = 0, released = 0, released_untracked = 0, active = 0, leaks = 0;
    uint64_t released_inherited = 0;  // PQfinish of a handle its parent held at fork
    uint64_t leaked_at_exit = 0, pings = 0, resets = 0, dropped = 0;
    uint64_t dropped_stacks = 0, stacks_unwound = 0, stacks_truncated = 0;
    uint64_t python_stacks = 0, python_truncated = 0;
    std::vector<SiteReport> sites;           // worst first, at most top_sites
    std::vector<ConnReport> connections;     // live handles, oldest first
    std::map<std::string, uint64_t> states;  // live handles by state, known states only
    uint64_t pool_slots_lost = 0;            // summed over its sites
    ProcessSocketReport sockets;             // if sockets.tracked: db_sockets, each handle's socket...
    std::string container_id, pod_uid;       // its container; "" when none
    std::vector<LastUserReport> last_users;  // worst first, at most top_sites (last_users.h)
    size_t last_users_total = 0;             // every last user of its live handles
};

// Exited processes folded together by name (comm) once more exited
// processes ended than are listed one by one: their counts, per site too,
// stay in the totals while memory stays bounded.
struct ExitedGroup {
    std::string comm;
    uint64_t processes = 0;
    uint64_t acquired = 0, released = 0, released_untracked = 0, leaked_at_exit = 0;
    uint64_t released_inherited = 0;  // kept: the totals of an exited process stay whole when folded
    uint64_t pings = 0, resets = 0, dropped = 0, dropped_stacks = 0, stacks_unwound = 0, stacks_truncated = 0;
    std::vector<SiteReport> sites;  // by site name, worst first (no frames kept)
};

// Adds one exited process (its report with every site) to its group.
void fold_exited(ExitedGroup& group, const ProcessReport& p);

struct Totals {
    uint64_t acquired = 0, released = 0, active = 0, leaks = 0, leaked_at_exit = 0, dropped = 0;
    double leak_ratio = 0;  // leaks / acquired * 100
    bool sockets_tracked = false;
    uint64_t db_sockets = 0;
    int64_t tracking_discrepancy = 0;  // db_sockets - active
};

// A leak notice (HikariCP's leak detection): a live connection crossed
// leak_after_s ("leak"), or one so reported was finished ("released").
struct Notice {
    uint64_t seq = 0;  // 1, 2, ... in the order they were given
    std::string kind;
    int64_t wall_time_s = 0;
    uint32_t pid = 0, tid = 0;
    std::string comm;
    uint64_t conn = 0;
    double age_ms = 0;  // leak: its age then; released: how long it was held
    SharedText site;    // shared with its handle's row (100,000 leaks in one batch at scale)
    bool pooled = false;
    double in_transaction_ms = 0;  // pooled leak: how long in a transaction with no state change
    Frames frames = nullptr;
};

struct Snapshot {
    int64_t wall_time_s = 0;
    double leak_after_s = kDefaultLeakAfterS;
    size_t frames_shown = 10;
    size_t connections_shown = kDefaultConnectionsShown;           // per process in the JSON (oldest first)
    size_t connections_listed_max = kDefaultConnectionsListedMax;  // in all processes together
    Totals totals;
    std::vector<ProcessReport> processes;    // by pid
    std::vector<Notice> notices;             // the latest ones, oldest first (LeakNotices)
    std::vector<ExitedGroup> exited_folded;  // older exited processes, one row per comm
    uint64_t exited_folded_processes = 0;    // how many processes they hold
    std::vector<ServerSummary> servers;      // --server: each server's read this interval
    std::vector<LastUserReport> last_users;  // over every process, by label; worst first, at most top_sites
    size_t last_users_total = 0;
};

// Names a site for people, e.g. "get_users+0x3c (api)".
using SiteNamer = std::function<std::string(const RawSite& site)>;
// The stack of a site, if one was collected.
using SiteFrames = std::function<Frames(const RawSite& site)>;

// The only place report rules live:
// - active: live handles; an exited process holds none (leaked_at_exit instead)
// - leaks: live handles at least leak_after_s old (0 gives acquired - released);
//   pooled handles whose state is known: in_transaction or in_error for
//   leak_after_s or longer (an idle pooled handle sits in its pool); a
//   site's leaks: a pooled leak is its last user's (the row of that name,
//   or one of its own with nothing acquired), where that is known
// - leak_ratio: leaks / acquired * 100, 0 when nothing was acquired
// - dropped: every map insertion that did not fit, summed
// - tracking_discrepancy: db sockets - active handles
// - exited_folded: counted in the totals like the processes listed
Snapshot build_snapshot(const RawState& raw, const ModelOptions& opts, const SiteNamer& name_site,
                        const SiteFrames& site_frames = nullptr);
// The same, taking what it can from raw rather than copying it (raw's
// socket reports are left empty).
Snapshot build_snapshot(RawState&& raw, const ModelOptions& opts, const SiteNamer& name_site,
                        const SiteFrames& site_frames = nullptr);

// How many of each process's live handles (snap.processes[i].connections,
// oldest first) the JSON lists: the oldest over all processes, at most
// connections_shown of one process and connections_listed_max in all.
// Equal ages go to the earlier process, so each process lists a prefix.
std::vector<size_t> connections_listed(const Snapshot& snap);

// Whether a process has anything to say: it called libpq (acquired,
// released, pinged, reset, or lost counts to full maps) or holds or held a
// database socket (an inherited one too).
bool touched_libpq(const ProcessReport& p);
// An exited process that never touched libpq: a short helper a library
// spawned (ldconfig under psycopg 3). The text report and the live view
// leave these out; JSON keeps all. A live one stays: a target before its
// first connect must be seen to be traced.
bool quiet_helper(const ProcessReport& p);

}  // namespace connleak
