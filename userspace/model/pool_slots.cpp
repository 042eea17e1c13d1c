#include "pool_slots.h"

#include <algorithm>
#include <vector>

namespace connleak {

void PoolSlots::update(Snapshot& snap)
{
    std::map<uint32_t, const ProcessReport*> procs;
    // Every live handle, sorted: a flat list, not a tree node per handle
    // (100,000 live handles a report).
    std::vector<Key> live;
    std::map<Key, std::string> borrowed;
    for (const ProcessReport& p : snap.processes) {
        procs[p.pid] = &p;
        for (const ConnReport& c : p.connections) {
            if (!borrowed_.empty())
                live.emplace_back(p.pid, c.conn, c.acquired_ns);
            if (c.pooled && c.state_known && (c.state == ConnState::in_transaction || c.state == ConnState::in_error))
                borrowed[{p.pid, c.conn, c.acquired_ns}] = c.site;
        }
    }
    std::sort(live.begin(), live.end());
    for (const auto& [key, site] : borrowed_) {
        const uint32_t pid = std::get<0>(key);
        auto p = procs.find(pid);
        // Gone with its process: leaked at exit, not a slot lost.
        if (!std::binary_search(live.begin(), live.end(), key) && p != procs.end() && !p->second->exited)
            lost_[{pid, site}]++;
    }
    borrowed_ = std::move(borrowed);
    for (ProcessReport& p : snap.processes) {
        p.pool_slots_lost = 0;
        for (auto it = lost_.lower_bound({p.pid, ""}); it != lost_.end() && it->first.first == p.pid; ++it)
            p.pool_slots_lost += it->second;
        for (SiteReport& s : p.sites)
            if (auto it = lost_.find({p.pid, s.site}); it != lost_.end())
                s.pool_slots_lost = it->second;
    }
}

}  // namespace connleak
