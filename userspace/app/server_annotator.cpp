#include "server_annotator.h"

#include <cstdio>

#include "clock.h"
#include "held_endpoints.h"

namespace connleak {

void ServerAnnotator::add_process(uint32_t pid)
{
    pre_attach_[pid] = EndpointScanner::inodes(pid);
}

void ServerAnnotator::annotate(RawState& raw)
{
    const uint64_t t0 = monotonic_ns();
    ServerJoinInput& in = raw.server;
    in.enabled = true;
    in.queries = opts_.queries;
    in.query_max = opts_.query_max;
    in.servers = reader_.latest();
    EndpointScanner scanner;
    for (const RawProcess& p : raw.processes)
        if (!p.stats.exited_ns)
            in.held[p.pid] = scanner.scan(p.pid);
    // Only sockets still held: an inode number is reused once freed.
    for (auto& [pid, inodes] : pre_attach_) {
        std::set<uint64_t> still;
        for (const HeldEndpoint& e : in.held[pid])
            if (inodes.count(e.inode))
                still.insert(e.inode);
        inodes = still;
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
                  "worker_cpu_ms_per_read %.3f annotate_ms %.3f (x%llu)\n",
                  static_cast<unsigned long long>(c.reads), c.reads ? double(c.rows) / c.reads : 0.0,
                  per(c.query_ns, c.reads), per(c.scan_ns, c.reads), per(c.cpu_ns, c.reads),
                  per(annotate_ns_, annotations_), static_cast<unsigned long long>(annotations_));
    return line;
}

}  // namespace connleak
