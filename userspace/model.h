// The pure model: raw map contents in, a report (Snapshot) out.
// No kernel, no files, no terminal here, so every rule of the report is
// unit-testable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "connleak.h"
#include "socket_model.h"

namespace connleak {

// One traced process as read from the maps (or kept after it exited).
struct RawProcess {
    uint32_t pid = 0;
    std::string comm;
    proc_stats stats{};  // stats.exited_ns != 0 once its last thread exited
    uint64_t stacks_unwound = 0, stacks_truncated = 0;  // userspace unwinding (StackTable)
    uint64_t python_stacks = 0, python_truncated = 0;   // with Python frames; cut at the frame bound
};

struct RawConn {
    uint32_t pid = 0;
    uint64_t conn = 0;
    conn_info info{};
};

struct RawSite {
    uint32_t pid = 0;
    uint64_t site = 0;  // return address in the caller, or a stack's key (StackTable::refine)
    site_stats stats{};
};

// Everything read in one pass over the maps, plus what userspace kept of
// processes that have exited since.
struct RawState {
    uint64_t now_ns = 0;  // CLOCK_MONOTONIC, same clock as bpf_ktime_get_ns()
    int64_t wall_time_s = 0;
    std::vector<RawProcess> processes;
    std::vector<RawConn> conns;
    std::vector<RawSite> sites;
    bool sockets_tracked = false;                     // socket_tracer ran
    std::map<uint32_t, ProcessSocketReport> sockets;  // by pid
};

struct ModelOptions {
    double leak_after_s = 30;
    size_t top_sites = 10;  // sites listed per process
    size_t frames_shown = 10;  // stack frames the text report shows per site
};

// A stack, outermost frame last ("func+0x3c (module) file.c:42").
using Frames = std::shared_ptr<const std::vector<std::string>>;

struct SiteReport {
    std::string site;
    uint64_t acquired = 0, released = 0, active = 0, leaks = 0, leaked_at_exit = 0;
    double avg_ms = 0;  // mean hold time of released handles
    double max_ms = 0;  // longest hold, released or still live
    Frames frames = nullptr;  // null when no stack was collected
};

struct ConnReport {
    uint64_t conn = 0;
    uint32_t tid = 0;
    std::string site;
    double age_ms = 0;
    bool leak = false;
    uint64_t acquired_ns = 0;  // with pid and conn, names one acquisition
    Frames frames = nullptr;
};

struct ProcessReport {
    uint32_t pid = 0;
    std::string comm;
    bool exited = false;
    uint64_t acquired = 0, released = 0, released_untracked = 0, active = 0, leaks = 0;
    uint64_t leaked_at_exit = 0, pings = 0, resets = 0, dropped = 0;
    uint64_t dropped_stacks = 0, stacks_unwound = 0, stacks_truncated = 0;
    uint64_t python_stacks = 0, python_truncated = 0;
    std::vector<SiteReport> sites;         // worst first, at most top_sites
    std::vector<ConnReport> connections;   // live handles, oldest first
    ProcessSocketReport sockets;  // if sockets.tracked: db_sockets, each handle's socket...
};

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
    std::string site;
    Frames frames = nullptr;
};

struct Snapshot {
    int64_t wall_time_s = 0;
    double leak_after_s = 30;
    size_t frames_shown = 10;
    Totals totals;
    std::vector<ProcessReport> processes;  // by pid
    std::vector<Notice> notices;           // the latest ones, oldest first (LeakNotices)
};

// Names a site for people, e.g. "get_users+0x3c (api)".
using SiteNamer = std::function<std::string(const RawSite& site)>;
// The stack of a site, if one was collected.
using SiteFrames = std::function<Frames(const RawSite& site)>;

// The only place report rules live:
// - active: live handles; an exited process holds none (leaked_at_exit instead)
// - leaks: live handles at least leak_after_s old (0 gives acquired - released)
// - leak_ratio: leaks / acquired * 100, 0 when nothing was acquired
// - dropped: every map insertion that did not fit, summed
// - tracking_discrepancy: db sockets - active handles
Snapshot build_snapshot(const RawState& raw, const ModelOptions& opts, const SiteNamer& name_site,
                        const SiteFrames& site_frames = nullptr);

}  // namespace connleak
