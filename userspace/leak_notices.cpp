// Leak notices (see leak_notices.h).
#include "leak_notices.h"

#include <cinttypes>
#include <cstdio>

#include "safe_text.h"

namespace connleak {

std::vector<Notice> LeakNotices::update(const Snapshot& snap, const HoldLookup& hold)
{
    std::vector<Notice> out;
    std::map<uint32_t, const ProcessReport*> procs;
    for (const ProcessReport& p : snap.processes)
        procs[p.pid] = &p;

    // Reported connections gone from the live ones: released.
    std::map<Key, const ConnReport*> live;
    for (const ProcessReport& p : snap.processes)
        for (const ConnReport& c : p.connections)
            live[{p.pid, c.conn, c.acquired_ns}] = &c;
    for (auto it = reported_.begin(); it != reported_.end();) {
        auto& [key, leak] = *it;
        auto [pid, conn, acquired_ns] = key;
        auto c = live.find(key);
        if (c != live.end()) {
            leak.age_ms = c->second->age_ms;  // the last age seen
            ++it;
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
            if (!c.leak || reported_.count(key))
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

std::string render_notice(const Notice& n, double leak_after_s, size_t frames_shown)
{
    char head[1024];
    if (n.kind == "leak")
        std::snprintf(head, sizeof head,
                      "connleak: leak: connection 0x%" PRIx64 " of pid %u (%s) on thread %u held %.1fs"
                      " (leak-after %gs), acquired at %s\n",
                      n.conn, n.pid, safe_text(n.comm).c_str(), n.tid, n.age_ms / 1000.0, leak_after_s,
                      safe_text(n.site).c_str());
    else
        std::snprintf(head, sizeof head,
                      "connleak: released: previously reported leaked connection 0x%" PRIx64
                      " of pid %u (%s) on thread %u was finished after %.1fs, acquired at %s\n",
                      n.conn, n.pid, safe_text(n.comm).c_str(), n.tid, n.age_ms / 1000.0, safe_text(n.site).c_str());
    std::string out = head;
    if (n.kind == "leak" && n.frames) {
        size_t shown = 0;
        for (const std::string& f : *n.frames) {
            if (shown++ == frames_shown) {
                out += "    ... " + std::to_string(n.frames->size() - frames_shown) + " more\n";
                break;
            }
            out += "    at " + safe_text(f) + "\n";
        }
    }
    return out;
}

}  // namespace connleak
