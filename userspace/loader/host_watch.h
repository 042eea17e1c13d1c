// --all: every process on the host that maps a libpq, now and later.
//
// Each distinct libpq file (by device and inode, as the kernel maps it) is
// probed once, for every process (pid -1); the kernel's process filter then
// decides. A process that enters a probed file joins the filter by itself
// (bpf/adopt.bpf.h), so new processes and dlopen of a known file cost no
// scan. What only a scan finds: a libpq file not probed yet (a container's
// own, a private copy, a dlopen of another file). scan() reads
// /proc/PID/maps of the processes not seen at the last scan (a new
// container's), and of every process when asked (a dlopen of an unknown file
// in an old process): on timers, once a second and once every 30 s (cost()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "connleak_loader.h"
#include "libpq_discovery.h"
#include "result.h"
#include "sockets_loader.h"

namespace connleak {

class HostWatch {
public:
    // on_new: a process scan() added to the filter (to learn its files).
    HostWatch(Tracer& tracer, SocketTracer* sockets, std::function<void(uint32_t pid)> on_new);

    // Probes a file named by path (the host's own libpq, --libpq).
    Status probe_path(const std::string& path, const std::function<bool()>& stop = {});

    // One pass over /proc: new libpq files get the probes, processes that
    // map one and are not traced yet join the filter (connleak excepted).
    // Problems with one file or process are warnings on stderr, once each.
    // full: every process, else only pids not seen at the last scan.
    void scan(bool full, const std::function<bool()>& stop = {});

    struct Cost {
        uint64_t scans = 0, total_ns = 0, max_ns = 0, maps_read = 0;  // reading /proc, attaches excluded
        uint64_t full_scans = 0, full_ns = 0, attach_ns = 0;
    };
    const Cost& cost() const { return cost_; }

private:
    using FileKey = std::tuple<uint32_t, uint32_t, uint64_t>;
    void probe(const LibpqFile& f, const std::function<bool()>& stop);
    void warn(const std::string& message);

    Tracer& tracer_;
    SocketTracer* sockets_;
    std::function<void(uint32_t)> on_new_;
    std::set<FileKey> seen_files_;  // probed, or failed to (warned once)
    std::set<std::string> warned_;
    // Scans each pid was read in, up to kSettled: a process is read in its
    // first scans (a fork that execs, ld.so mapping libpq), then no more
    // until a full scan.
    std::map<uint32_t, int> seen_pids_;
    Cost cost_;
};

}  // namespace connleak
