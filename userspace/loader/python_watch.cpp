// Python processes for the kernel (see python_watch.h).
#include "python_watch.h"

#include <bpf/bpf.h>
#include <algorithm>
#include <cstdio>
#include <string>
#include <sys/stat.h>

namespace connleak {

PythonWatcher::PythonWatcher(int map_fd) : map_fd_(map_fd) {}

namespace {
constexpr uint64_t kSettleNs = 3000000000ULL;  // a new process's first seconds
}

bool PythonWatcher::settling(uint64_t now_ns) const
{
    return now_ns < settle_until_ns_;
}

bool PythonWatcher::waiting() const
{
    return waiting_;
}

void PythonWatcher::settle()
{
    settle_until_ns_ = 0;
    waiting_ = false;
    for (const auto& [pid, s] : seen_) {
        if (s.state != PythonProbe::ready && s.state != PythonProbe::unsupported)
            settle_until_ns_ = std::max(settle_until_ns_, s.first_seen_ns + kSettleNs);
        waiting_ = waiting_ || s.state == PythonProbe::not_ready;
    }
}

void PythonWatcher::poll(const std::vector<RawProcess>& procs, uint64_t now_ns, uint64_t traced_execs)
{
    const bool no_exec = execs_ && *execs_ == traced_execs;
    execs_ = traced_execs;
    // `procs` is every process of the map: one gone from it (archived
    // between two looks) is forgotten here, or a stale not-ready entry
    // would keep the caller looking every 0.1 s (waiting()) and a reused
    // pid would find it.
    std::vector<uint32_t> listed;
    listed.reserve(procs.size());
    for (const RawProcess& p : procs)
        listed.push_back(p.pid);
    std::sort(listed.begin(), listed.end());
    for (auto it = seen_.begin(); it != seen_.end();)
        it = std::binary_search(listed.begin(), listed.end(), it->first) ? std::next(it) : seen_.erase(it);
    for (const RawProcess& p : procs) {
        if (p.stats.exited_ns) {
            seen_.erase(p.pid);
            continue;
        }
        if (no_exec) {
            auto it = seen_.find(p.pid);
            if (it != seen_.end() &&
                (it->second.state == PythonProbe::not_python || it->second.state == PythonProbe::unsupported))
                continue;  // the image it was found with, still
        }
        python_layout current;
        if (bpf_map_lookup_elem(map_fd_, &p.pid, &current) == 0)
            continue;  // known (or inherited from its parent)
        struct stat st;
        if (stat(("/proc/" + std::to_string(p.pid) + "/exe").c_str(), &st) != 0)
            continue;
        auto it = seen_.find(p.pid);
        if (it != seen_.end() && it->second.exe_dev == st.st_dev && it->second.exe_ino == st.st_ino &&
            (it->second.state == PythonProbe::not_python || it->second.state == PythonProbe::unsupported))
            continue;  // looked at already, and it has not exec'ed since
        if (!tsd_key0_ && !tsd_failed_) {
            auto off = own_tsd_key0_offset();
            if (off)
                tsd_key0_ = off.value();
            else
                tsd_failed_ = true;
        }
        PythonFound found = probe_python(p.pid, tsd_key0_.value_or(0), ++generation_);
        if (found.state == PythonProbe::ready && !tsd_key0_) {
            found.state = PythonProbe::unsupported;
            found.message = "cannot find where the C library keeps thread-specific data";
        }
        if (found.state == PythonProbe::ready &&
            bpf_map_update_elem(map_fd_, &p.pid, &found.process.layout, BPF_ANY) != 0) {
            found.state = PythonProbe::unsupported;
            found.message = "no room in the kernel's Python map";
        }
        if (found.state == PythonProbe::unsupported)
            std::fprintf(stderr, "connleak: warning: PID %u: no Python frames: %s\n", p.pid, found.message.c_str());
        const uint64_t first = it != seen_.end() ? it->second.first_seen_ns : now_ns;
        seen_[p.pid] = Seen{st.st_dev, st.st_ino, found.state, first};
    }
    settle();
}

}  // namespace connleak
