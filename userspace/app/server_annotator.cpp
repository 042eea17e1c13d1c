#include "server_annotator.h"

#include <algorithm>
#include <cstdio>

#include "clock.h"
#include "held_endpoints.h"

namespace connleak {

void ServerAnnotator::add_process(uint32_t pid)
{
    pre_attach_[pid] = EndpointScanner::inodes(pid);
    std::vector<uint32_t> pids;
    for (const auto& [p, inodes] : pre_attach_)
        pids.push_back(p);
    reader_.set_pids(std::move(pids));
}

void ServerAnnotator::annotate(RawState& raw)
{
    const uint64_t t0 = monotonic_ns();
    ServerJoinInput& in = raw.server;
    in.enabled = true;
    in.queries = opts_.queries;
    in.query_max = opts_.query_max;
    in.servers = reader_.latest();
    in.held = reader_.latest_held();
    // For the next round: the worker reads these processes' sockets.
    std::vector<uint32_t> running;
    for (const RawProcess& p : raw.processes)
        if (!p.stats.exited_ns)
            running.push_back(p.pid);
    reader_.set_pids(running);
    // Only sockets still held (an inode number is reused once freed), of
    // processes still running; a process not scanned yet keeps its own.
    for (auto it = pre_attach_.begin(); it != pre_attach_.end();) {
        if (std::find(running.begin(), running.end(), it->first) == running.end()) {
            it = pre_attach_.erase(it);
            continue;
        }
        if (auto h = in.held.find(it->first); h != in.held.end()) {
            std::set<uint64_t> still;
            for (const HeldEndpoint& e : h->second)
                if (it->second.count(e.inode))
                    still.insert(e.inode);
            it->second = std::move(still);
        }
        ++it;
    }
    in.pre_attach = pre_attach_;
    in.now_ns = monotonic_ns();
    annotations_++;
    annotate_ns_ += in.now_ns - t0;
}

std::string ServerAnnotator::cost_summary() const
{
    const ActivityReader::Cost c = reader_.cost();
    auto per = [](uint64_t total, uint64_t n) { return n ? total / 1e6 / n : 0.0; };
    char line[320];
    std::snprintf(line, sizeof(line),
                  "connleak: server stats: reads %llu rows_per_read %.1f query_ms %.3f backend_scan_ms %.3f "
                  "worker_cpu_ms_per_read %.3f held_scan_ms %.3f annotate_ms %.3f (x%llu)\n",
                  static_cast<unsigned long long>(c.reads), c.reads ? double(c.rows) / c.reads : 0.0,
                  per(c.query_ns, c.reads), per(c.scan_ns, c.reads), per(c.cpu_ns, c.reads), per(c.held_ns, c.rounds),
                  per(annotate_ns_, annotations_), static_cast<unsigned long long>(annotations_));
    return line;
}

}  // namespace connleak
