#include "host_watch.h"

#include <cstdio>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "clock.h"
#include "proc_maps.h"
#include "process_tree.h"

namespace connleak {

HostWatch::HostWatch(Tracer& tracer, SocketTracer* sockets, std::function<void(uint32_t pid)> on_new)
        : tracer_(tracer), sockets_(sockets), on_new_(std::move(on_new))
{}

void HostWatch::warn(const std::string& message)
{
    if (warned_.insert(message).second)
        std::fprintf(stderr, "connleak: warning: %s\n", message.c_str());
}

Status HostWatch::probe_path(const std::string& path, const std::function<bool()>& stop)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        return Error{"cannot use libpq " + path};
    LibpqFile f{major(st.st_dev), minor(st.st_dev), st.st_ino, path};
    if (!seen_files_.insert(f.key()).second)
        return Ok{};
    if (auto s = tracer_.attach_libpq(path, {}, stop); !s)
        return s;
    if (sockets_)
        if (auto s = sockets_->attach_libpq(path); !s)
            return s;
    return Ok{};
}

void HostWatch::probe(const LibpqFile& f, const std::function<bool()>& stop)
{
    if (!seen_files_.insert(f.key()).second)
        return;
    const uint64_t start = monotonic_ns();
    struct Timer {
        uint64_t start;
        uint64_t& sum;
        ~Timer() { sum += monotonic_ns() - start; }
    } timer{start, cost_.attach_ns};
    // The path goes through the process (its /proc/PID/root or map_files),
    // so a container's own file is reached in its mount namespace.
    if (auto s = tracer_.attach_libpq(f.path, {}, stop); !s) {
        warn(s.error().message + " (not traced)");
        return;
    }
    if (sockets_)
        if (auto s = sockets_->attach_libpq(f.path); !s)
            warn(s.error().message + " (no socket tracking for it)");
}

void HostWatch::scan(bool full, const std::function<bool()>& stop)
{
    const uint64_t start = monotonic_ns();
    const uint64_t attach_before = cost_.attach_ns;
    std::set<uint32_t> traced;
    for (const RawProcess& p : tracer_.read_processes())
        traced.insert(p.pid);
    const uint32_t self = static_cast<uint32_t>(getpid());
    constexpr int kSettled = 3;
    std::map<uint32_t, int> now;
    for (uint32_t pid : all_pids()) {
        auto before = seen_pids_.find(pid);
        int& reads = now[pid];
        reads = before == seen_pids_.end() ? 0 : before->second;
        if (pid == self || (stop && stop()) || (!full && reads >= kSettled))
            continue;
        reads++;
        auto maps = read_maps(pid);
        cost_.maps_read++;
        if (!maps)
            continue;  // gone, or a kernel thread
        const std::vector<LibpqFile> files = libpq_files_in(pid, *maps);
        for (const LibpqFile& f : files)
            probe(f, stop);  // a traced process may have loaded another file
        if (files.empty() || traced.count(pid))
            continue;
        auto added = tracer_.adopt_process(pid);
        if (!added) {
            warn(added.error().message);
            continue;
        }
        if (!added.value())
            continue;  // the kernel adopted it at its first call meanwhile
        if (sockets_)  // what it holds now predates the attach
            sockets_->add_process(pid);
        if (on_new_)
            on_new_(pid);
    }
    seen_pids_.swap(now);
    const uint64_t took = monotonic_ns() - start - (cost_.attach_ns - attach_before);
    cost_.scans++;
    cost_.total_ns += took;
    cost_.max_ns = std::max(cost_.max_ns, took);
    if (full) {
        cost_.full_scans++;
        cost_.full_ns += took;
    }
}

}  // namespace connleak
