// The Session's TraceSource on the real kernel: a Tracer's maps, and
// kill(2) and /proc for what the maps cannot tell.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "connleak_loader.h"
#include "session.h"

namespace connleak {

// kill(pid, 0): true for a zombie too (and for a process we may not signal).
bool process_exists(uint32_t pid);
// /proc/<pid>/comm, or "" once it is gone.
std::string read_comm(uint32_t pid);

class TracerSource : public TraceSource {
public:
    explicit TracerSource(Tracer& tracer) : tracer_(tracer) {}
    void consume_events(const EventHandler& handler) override { tracer_.consume_events(handler); }
    RawState read() override { return tracer_.read(); }
    std::vector<RawProcess> read_processes() override { return tracer_.read_processes(); }
    RawState read_process(uint32_t pid) override { return tracer_.read_process(pid); }
    std::map<uint32_t, RawState> read_processes_of(const std::vector<uint32_t>& pids) override
    {
        return tracer_.read_processes_of(pids);
    }
    void forget(const RawState& entries) override
    {
        for (const RawProcess& p : entries.processes)
            comms_.erase(p.pid);
        tracer_.forget(entries);
    }
    bool process_exists(uint32_t pid) override { return connleak::process_exists(pid); }
    // read_comm, kept a while: a process's name changes at an exec (the
    // kernel counts those of traced processes), or by prctl(PR_SET_NAME),
    // seen within 10 to 19 s (by pid) and a report. Reading it every report
    // was three system calls a process (3,000 at scale).
    std::string comm(uint32_t pid) override;
    void watch_release(uint32_t pid, uint64_t conn, uint64_t acquired_ns) override
    {
        tracer_.watch_release(pid, conn, acquired_ns);
    }

private:
    Tracer& tracer_;
    struct KnownComm {
        std::string comm;
        uint64_t read_ns = 0;
    };
    std::map<uint32_t, KnownComm> comms_;
    // Tracer::procs_changes and traced_execs when comms_ was filled: a
    // fork, exit or exec since, and every name is read again.
    std::pair<uint64_t, uint64_t> comm_counts_{UINT64_MAX, UINT64_MAX};
};

}  // namespace connleak
