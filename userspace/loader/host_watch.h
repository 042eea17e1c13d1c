// --all: every process on the host that maps a libpq, now and later.
//
// Each distinct libpq file (by device and inode, as the kernel maps it) is
// probed once, for every process (pid -1); the kernel's process filter then
// decides. A process that enters a probed file joins the filter by itself
// (bpf/adopt.bpf.h), so new processes and dlopen of a known file cost no
// scan. What only a scan finds: a libpq file not probed yet (a container's
// own, a private copy, a dlopen of another file). scan() reads
// /proc/PID/maps of every process, so it runs on a timer (see cost()).
#pragma once

#include <cstdint>
#include <functional>
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
    void scan(const std::function<bool()>& stop = {});

    struct Cost {
        uint64_t scans = 0, total_ns = 0, max_ns = 0, maps_read = 0;
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
    Cost cost_;
};

}  // namespace connleak
