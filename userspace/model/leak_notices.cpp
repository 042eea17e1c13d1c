// Leak notices (see leak_notices.h).
#include "leak_notices.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace connleak {

std::vector<Notice> LeakNotices::update(const Snapshot& snap, const HoldLookup& hold)
{
    std::vector<Notice> out;
    std::map<uint32_t, const ProcessReport*> procs;
    for (const ProcessReport& p : snap.processes)
        procs[p.pid] = &p;

    // Reported connections gone from the live ones: released.
    // Every live handle, sorted: a flat list, not a tree node per handle
    // (100,000 live handles a report).
    std::vector<std::pair<Key, const ConnReport*>> live;
    for (const ProcessReport& p : snap.processes)
        for (const ConnReport& c : p.connections)
            live.emplace_back(Key{p.pid, c.conn, c.acquired_ns}, &c);
    std::sort(live.begin(), live.end());
    auto find_live = [&](const Key& key) {
        auto it =
            std::lower_bound(live.begin(), live.end(), std::make_pair(key, static_cast<const ConnReport*>(nullptr)));
        return it != live.end() && it->first == key ? it : live.end();
    };
    for (auto it = reported_.begin(); it != reported_.end();) {
        auto& [key, leak] = *it;
        auto [pid, conn, acquired_ns] = key;
        auto c = find_live(key);
        if (c != live.end() && (c->second->leak || !c->second->pooled)) {
            leak.age_ms = c->second->age_ms;  // the last age seen
            ++it;
            continue;
        }
        if (c != live.end()) {  // a pooled handle given back: out of its transaction
            Notice n = leak;
            n.kind = "released";
            n.wall_time_s = snap.wall_time_s;
            n.age_ms = c->second->age_ms;
            out.push_back(std::move(n));
            it = reported_.erase(it);
            continue;
        }
        // Gone from an exited process: released only if its release was
        // seen (else it leaked at exit).
        auto p = procs.find(pid);
        std::optional<double> held = hold ? hold(pid, conn, acquired_ns) : std::nullopt;
        if (p != procs.end() && (!p->second->exited || held)) {
            Notice n = leak;
            n.kind = "released";
            n.wall_time_s = snap.wall_time_s;
            if (held)
                n.age_ms = *held;
            out.push_back(std::move(n));
        }
        it = reported_.erase(it);
    }

    for (const ProcessReport& p : snap.processes) {
        if (p.exited)
            continue;
        for (const ConnReport& c : p.connections) {
            Key key{p.pid, c.conn, c.acquired_ns};
            // A connection made before the attach (--server) has no handle
            // or stack to name: listed in the report, not noticed.
            if (!c.leak || c.pre_attach || reported_.count(key))
                continue;
            Notice n;
            n.kind = "leak";
            n.wall_time_s = snap.wall_time_s;
            n.pid = p.pid;
            n.tid = c.tid;
            n.comm = p.comm;
            n.conn = c.conn;
            n.age_ms = c.age_ms;
            n.site = c.site;
            n.frames = c.frames;
            n.pooled = c.pooled && c.state_known;
            if (n.pooled) {
                // Charged to its borrower: the stack that began its unit of
                // work, once the send hook saw one; quiet for as long as idle.
                n.in_transaction_ms = c.idle_ms >= 0 ? c.idle_ms : c.state_ms;
                if (!c.last_used_site.empty()) {
                    n.site = c.last_used_site;
                    n.frames = c.last_used_frames;
                }
            }
            reported_.emplace(key, n);
            out.push_back(std::move(n));
        }
    }
    for (Notice& n : out) {
        n.seq = ++seq_;
        recent_.push_back(n);
    }
    while (recent_.size() > keep_)
        recent_.pop_front();
    return out;
}

}  // namespace connleak
