// Leak notices (see leak_notices.h).
#include "leak_notices.h"

#include <algorithm>
#include <iterator>
#include <tuple>
#include <utility>
#include <vector>

namespace connleak {

std::shared_ptr<const std::string> LeakNotices::shared_text(const std::string& s)
{
    auto& slot = texts_[s];
    auto text = slot.lock();
    if (!text) {
        text = std::make_shared<const std::string>(s);
        slot = text;
    }
    return text;
}

Notice LeakNotices::release_of(const Key& key, const Reported& leak) const
{
    Notice n;
    n.kind = "released";
    std::tie(n.pid, n.conn, std::ignore) = key;
    n.tid = leak.tid;
    n.comm = *leak.comm;
    n.age_ms = leak.age_ms;
    n.site = *leak.site;
    n.pooled = leak.pooled;
    n.in_transaction_ms = leak.in_transaction_ms;
    n.frames = leak.frames;
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
    for (const ProcessReport& p : snap.processes)
        for (const ConnReport& c : p.connections)
            live.push_back({Key{p.pid, c.conn, c.acquired_ns}, &c, live.size()});
    std::sort(live.begin(), live.end());
    std::vector<char> still_reported(total, 0);
    auto next_live = live.begin();
    for (auto it = reported_.begin(); it != reported_.end();) {
        auto& [key, leak] = *it;
        auto [pid, conn, acquired_ns] = key;
        while (next_live != live.end() && next_live->key < key)
            ++next_live;
        const bool is_live = next_live != live.end() && next_live->key == key;
        const ConnReport* c = is_live ? next_live->conn : nullptr;
        if (c && (c->leak || !c->pooled)) {
            leak.age_ms = c->age_ms;  // the last age seen
            still_reported[next_live->ordinal] = 1;
            ++it;
            continue;
        }
        if (c) {  // a pooled handle given back: out of its transaction
            Notice n = release_of(key, leak);
            n.wall_time_s = snap.wall_time_s;
            n.age_ms = c->age_ms;
            out.push_back(std::move(n));
            it = reported_.erase(it);
            continue;
        }
        // Gone from an exited process: released only if its release was
        // seen (else it leaked at exit).
        auto p = procs.find(pid);
        std::optional<double> held = hold ? hold(pid, conn, acquired_ns) : std::nullopt;
        if (p != procs.end() && (!p->second->exited || held)) {
            Notice n = release_of(key, leak);
            n.wall_time_s = snap.wall_time_s;
            if (held)
                n.age_ms = *held;
            out.push_back(std::move(n));
        }
        it = reported_.erase(it);
    }

    size_t ordinal = 0;
    for (const ProcessReport& p : snap.processes) {
        if (p.exited) {
            ordinal += p.connections.size();
            continue;
        }
        for (const ConnReport& c : p.connections) {
            // A connection made before the attach (--server) has no handle
            // or stack to name: listed in the report, not noticed.
            const bool reported = still_reported[ordinal++];
            if (!c.leak || c.pre_attach || reported)
                continue;
            Key key{p.pid, c.conn, c.acquired_ns};
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
            reported_.emplace(key, Reported{n.tid, n.pooled, n.age_ms, n.in_transaction_ms, shared_text(n.comm),
                                            shared_text(n.site), n.frames});
            out.push_back(std::move(n));
        }
    }
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
    for (auto it = texts_.begin(); it != texts_.end();)  // no leak notice uses it any more
        it = it->second.expired() ? texts_.erase(it) : std::next(it);
    return out;
}

}  // namespace connleak
