// Leak notices (see leak_notices.h).
#include "leak_notices.h"

#include <algorithm>
#include <iterator>
#include <tuple>
#include <utility>
#include <vector>

namespace connleak {

LeakNotices::OriginRef LeakNotices::shared_origin(const std::string& comm, const SharedText& site,
                                                  const Frames& frames)
{
    // A batch's leaks come by process and site: mostly the one before's
    // origin again, found without building a key of two strings.
    if (last_origin_ && last_origin_->frames == frames && last_origin_->site == site && last_origin_->comm == comm)
        return last_origin_;
    auto it = origins_.find({comm, site.str(), frames.get()});
    if (it == origins_.end())
        it = origins_.emplace(std::make_tuple(comm, site.str(), frames.get()), Origin{comm, site, frames}).first;
    last_origin_ = OriginRef(&it->second);
    return last_origin_;
}

Notice LeakNotices::release_of(const Reported& leak)
{
    Notice n;
    n.kind = "released";
    n.pid = leak.pid;
    n.conn = leak.conn;
    n.tid = leak.tid;
    n.comm = leak.origin->comm;
    n.age_ms = leak.age_ms;
    n.site = leak.origin->site;
    n.pooled = leak.pooled;
    n.in_transaction_ms = leak.in_transaction_ms;
    n.frames = leak.origin->frames;
    return n;
}

std::vector<Notice> LeakNotices::update(const Snapshot& snap, const HoldLookup& hold)
{
    std::vector<Notice> out;
    std::map<uint32_t, const ProcessReport*> procs;
    for (const ProcessReport& p : snap.processes)
        procs[p.pid] = &p;

    // Reported connections gone from the live ones: released.
    // Every live handle, sorted: a flat list, not a tree node per handle
    // (100,000 live handles a report), walked alongside the reported ones
    // (both by key). `ordinal`: its place in snap's order, to know below
    // which are reported already without a lookup each.
    struct Live {
        Key key;
        const ConnReport* conn;
        size_t ordinal;
        bool operator<(const Live& o) const { return key < o.key; }
    };
    std::vector<Live> live;
    size_t total = 0;
    for (const ProcessReport& p : snap.processes)
        total += p.connections.size();
    live.reserve(total);
    // Sorted one process at a time: processes by pid make the runs, each
    // sorted, the whole list sorted (a sort of 100 handles, not of 100,000).
    bool by_pid = true;
    for (size_t i = 1; i < snap.processes.size(); i++)
        by_pid = by_pid && snap.processes[i - 1].pid < snap.processes[i].pid;
    for (const ProcessReport& p : snap.processes) {
        const auto run = live.end() - live.begin();
        for (const ConnReport& c : p.connections)
            live.push_back({Key{p.pid, c.conn, c.acquired_ns}, &c, live.size()});
        if (by_pid)
            std::sort(live.begin() + run, live.end());
    }
    if (!by_pid)
        std::sort(live.begin(), live.end());
    std::vector<char> still_reported(total, 0);
    auto next_live = live.begin();
    // Kept rows are moved down over the released ones: one pass, in order.
    auto kept = reported_.begin();
    for (auto it = reported_.begin(); it != reported_.end(); ++it) {
        Reported& leak = *it;
        const Key key = leak.key();
        const auto [pid, conn, acquired_ns] = key;
        while (next_live != live.end() && next_live->key < key)
            ++next_live;
        const bool is_live = next_live != live.end() && next_live->key == key;
        const ConnReport* c = is_live ? next_live->conn : nullptr;
        if (c && (c->leak || !c->pooled)) {
            leak.age_ms = c->age_ms;  // the last age seen
            still_reported[next_live->ordinal] = 1;
            if (kept != it)
                *kept = std::move(leak);
            ++kept;
            continue;
        }
        if (c) {  // a pooled handle given back: out of its transaction
            Notice n = release_of(leak);
            n.wall_time_s = snap.wall_time_s;
            n.age_ms = c->age_ms;
            out.push_back(std::move(n));
            continue;
        }
        // Gone from an exited process: released only if its release was
        // seen (else it leaked at exit).
        auto p = procs.find(pid);
        std::optional<double> held = hold ? hold(pid, conn, acquired_ns) : std::nullopt;
        if (p != procs.end() && (!p->second->exited || held)) {
            Notice n = release_of(leak);
            n.wall_time_s = snap.wall_time_s;
            if (held)
                n.age_ms = *held;
            out.push_back(std::move(n));
        }
    }
    reported_.erase(kept, reported_.end());

    // The leaks to notice, counted first: the batch is made at its size, not
    // grown by doubling (100,000 notices of ~170 bytes at once at scale, and
    // twice that while a doubling copies them).
    // A row reported already is not read again: its flag is asked first
    // (steady at scale: every one of 100,000 rows, 22 MB, walked twice more).
    size_t new_leaks = 0;
    size_t counted = 0;
    for (const ProcessReport& p : snap.processes)
        for (const ConnReport& c : p.connections)
            if (!still_reported[counted++])
                new_leaks += !p.exited && c.leak && !c.pre_attach;
    out.reserve(out.size() + new_leaks);
    const size_t already = reported_.size();
    if (already + new_leaks > reported_.capacity())
        reported_.reserve(already + new_leaks + already / 16);
    size_t ordinal = 0;
    for (const ProcessReport& p : snap.processes) {
        if (p.exited) {
            ordinal += p.connections.size();
            continue;
        }
        for (const ConnReport& c : p.connections) {
            // A connection made before the attach (--server) has no handle
            // or stack to name: listed in the report, not noticed.
            if (still_reported[ordinal++] || !c.leak || c.pre_attach)
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
            Reported row;
            row.pid = p.pid;
            row.tid = n.tid;
            row.pooled = n.pooled;
            row.conn = c.conn;
            row.acquired_ns = c.acquired_ns;
            row.age_ms = n.age_ms;
            row.in_transaction_ms = n.in_transaction_ms;
            row.origin = shared_origin(n.comm, n.site, n.frames);
            reported_.push_back(std::move(row));
            out.push_back(std::move(n));
        }
    }
    // The new ones in key order after the others: merged, not a tree.
    std::sort(reported_.begin() + already, reported_.end());
    std::inplace_merge(reported_.begin(), reported_.begin() + already, reported_.end());
    if (reported_.capacity() - reported_.size() > reported_.size() / 4 + 64)
        reported_.shrink_to_fit();  // after a burst of releases
    // Only the latest `keep_` are kept: a burst (100,000 leaks at once at
    // scale) is not copied in whole to be dropped right after.
    const size_t dropped_at_once = out.size() > keep_ ? out.size() - keep_ : 0;
    for (size_t i = 0; i < out.size(); i++) {
        out[i].seq = ++seq_;
        if (i >= dropped_at_once)
            recent_.push_back(out[i]);
    }
    while (recent_.size() > keep_)
        recent_.pop_front();
    for (auto it = origins_.begin(); it != origins_.end();)  // no leak notice uses it any more
        it = it->second.uses == 0 ? origins_.erase(it) : std::next(it);
    return out;
}

}  // namespace connleak
