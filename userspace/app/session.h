// The tracing session: each interval, reads the kernel's maps through a
// TraceSource, moves exited processes out of the kernel into userspace (the
// recent ones listed one by one, older ones folded per comm), and writes
// the report. Kept apart from the kernel so it can be driven by tests.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "defaults.h"
#include "leak_notices.h"
#include "model.h"
#include "notices_text.h"
#include "pool_slots.h"
#include "report_sink.h"
#include "site_names.h"
#include "stack_table.h"

namespace connleak {

// Where the session's raw state comes from: the Tracer's maps and /proc.
class TraceSource {
public:
    using EventHandler = std::function<void(const void* data, size_t size)>;
    virtual ~TraceSource() = default;
    // Ring-buffer records pending, each handed to `handler`.
    virtual void consume_events(const EventHandler& handler) = 0;
    // The process map, then the handle and site maps, then the clocks.
    virtual RawState read() = 0;
    // The process map alone.
    virtual std::vector<RawProcess> read_processes() = 0;
    // One process's entry (none if absent), handles and sites, read now.
    virtual RawState read_process(uint32_t pid) = 0;
    // The same for several processes (absent ones left out); a source that
    // can read each map once for all of them does.
    virtual std::map<uint32_t, RawState> read_processes_of(const std::vector<uint32_t>& pids)
    {
        std::map<uint32_t, RawState> out;
        for (uint32_t pid : pids)
            if (RawState one = read_process(pid); !one.processes.empty())
                out[pid] = std::move(one);
        return out;
    }
    // Deletes exactly these entries (process, handles and sites) from the maps.
    virtual void forget(const RawState& entries) = 0;
    // Whether `pid` exists, zombies included.
    virtual bool process_exists(uint32_t pid) = 0;
    virtual std::string comm(uint32_t pid) = 0;
    // A handle reported as a leak: say when it is released, with its hold
    // time (the kernel keeps quiet about most releases).
    virtual void watch_release(uint32_t /*pid*/, uint64_t /*conn*/, uint64_t /*acquired_ns*/) {}
};

struct SessionConfig {
    double leak_after_s = kDefaultLeakAfterS;
    size_t top_sites = 10;
    size_t stack_frames = 10;
    bool notice_stacks = false;  // every notice with its whole stack (--notice-stacks)
    std::string json_path;       // "" or "-": no snapshot file
    size_t keep_exited = 100;    // exited processes listed one by one; older ones are folded
    // Live handles the JSON lists per process (--connections).
    size_t connections_shown = kDefaultConnectionsShown;
    size_t connections_listed_max = kDefaultConnectionsListedMax;  // in all (--connections-max)
    std::vector<std::string> pool_frames = ModelOptions::default_pool_frames();
};

class Session {
public:
    Session(const SessionConfig& cfg, TraceSource& source, ReportSink& sink, StackTable& stacks)
            : cfg_(cfg), source_(source), sink_(sink), stacks_(stacks)
    {}

    SiteNames& names() { return names_; }
    // Adds what else is known of the processes (the socket tracer's view).
    void set_annotator(std::function<void(RawState&)> annotate) { annotate_ = std::move(annotate); }

    // Stack and release events pending in the ring buffer.
    void consume_events() { source_.consume_events(on_event_); }

    // True once every traced process has exited.
    bool all_exited();

    // One report to the sink and the JSON snapshot file. Returns "" or the
    // reason the JSON could not be written.
    std::string report(bool final);

    // The report without the sink, notices or file (for tests).
    Snapshot snapshot();

    // CPU time (ns, this thread) each step of the reports so far took, for
    // measurements (CONNLEAK_SCALE_STATS): reading and annotating the maps,
    // the model, the notices, and writing the sink and JSON file.
    struct Cost {
        uint64_t collect_ns = 0, model_ns = 0, notices_ns = 0, output_ns = 0;
    };
    const Cost& cost() const { return cost_; }

private:
    // What is kept of a process after it exited and its map entries were freed.
    struct Archived {
        RawProcess process;
        std::vector<RawConn> conns;
        std::vector<RawSite> sites;
        std::vector<RawStack> stacks;
    };

    RawState collect();
    void archive(uint32_t pid, RawState entry, uint64_t now_ns);
    void fold(const Archived& a);
    void watch_releases(const Snapshot& snap, const std::vector<Notice>& batch);
    std::string site_name(const RawSite& s);
    ModelOptions model_options() const;

    SessionConfig cfg_;
    TraceSource& source_;
    ReportSink& sink_;
    StackTable& stacks_;
    std::function<void(RawState&)> annotate_;
    TraceSource::EventHandler on_event_ = [this](const void* data, size_t size) { stacks_.on_event(data, size); };
    LeakNotices notices_;
    PoolSlots pool_slots_;
    NoticeText notice_text_;
    SiteNames names_;
    std::deque<Archived> recent_;                // exited, oldest first, listed one by one
    std::map<std::string, ExitedGroup> folded_;  // older exited processes, by comm
    std::set<uint32_t> live_;                    // pids of the last collect's running processes
    std::map<uint32_t, std::string> comms_;      // of running processes, for when they exit
    Cost cost_;
};

}  // namespace connleak
