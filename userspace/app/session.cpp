#include "session.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "atomic_file.h"
#include "clock.h"
#include "json_output.h"
#include "server_rows.h"
#include "snapshot_document.h"

namespace connleak {

bool Session::all_exited()
{
    for (const RawProcess& p : source_.read_processes())
        if (!p.stats.exited_ns && source_.process_exists(p.pid))
            return false;
    return true;
}

ModelOptions Session::model_options() const
{
    ModelOptions mopts;
    mopts.leak_after_s = cfg_.leak_after_s;
    mopts.top_sites = cfg_.top_sites;
    mopts.frames_shown = cfg_.stack_frames;
    mopts.connections_shown = cfg_.connections_shown;
    mopts.connections_listed_max = cfg_.connections_listed_max;
    mopts.pool_frames = cfg_.pool_frames;
    return mopts;
}

std::string Session::site_name(const RawSite& s)
{
    return s.site.kind != SiteKey::Kind::caller ? stacks_.site_name(s.site) : names_.name(s, live_.count(s.pid) != 0);
}

Snapshot Session::snapshot()
{
    uint64_t t = thread_cpu_ns();
    RawState raw = collect();
    cost_.collect_ns += thread_cpu_ns() - t;
    t = thread_cpu_ns();
    const ServerJoinInput server = std::move(raw.server);
    Snapshot snap = build_snapshot(
        std::move(raw), model_options(), [&](const RawSite& s) { return site_name(s); },
        [&](const RawSite& s) { return stacks_.frames(s.site); });
    join_server_view(snap, server);
    cost_.model_ns += thread_cpu_ns() - t;
    return snap;
}

std::string Session::report(bool final)
{
    Snapshot snap = snapshot();
    uint64_t t = thread_cpu_ns();
    pool_slots_.update(snap);
    const auto batch = notices_.update(snap, [&](uint32_t pid, uint64_t conn, uint64_t acquired_ns) {
        return stacks_.hold_ms(pid, conn, acquired_ns);
    });
    watch_releases(snap, batch);
    std::fputs(notice_text_.render(batch, {cfg_.leak_after_s, cfg_.stack_frames, cfg_.notice_stacks}).c_str(), stderr);
    snap.notices.assign(notices_.recent().begin(), notices_.recent().end());
    cost_.notices_ns += thread_cpu_ns() - t;
    t = thread_cpu_ns();
    if (final)
        sink_.finish(snap);
    else
        sink_.show(snap);
    std::string err;
    if (!cfg_.json_path.empty() && cfg_.json_path != "-")
        err = write_file_atomically(cfg_.json_path, [&](const PieceWriter& put) { write_snapshot_text(snap, put); });
    cost_.output_ns += thread_cpu_ns() - t;
    return err;
}

// Leaks just reported: their release notices need their hold times.
void Session::watch_releases(const Snapshot& snap, const std::vector<Notice>& batch)
{
    // The leaks' handles sorted, each process's rows walked once against
    // its own (100,000 leaks at once in 1,000 processes at scale: a walk of
    // the process's rows per leak before).
    std::vector<std::pair<uint32_t, uint64_t>> leaked;
    for (const Notice& n : batch)
        if (n.kind == "leak")
            leaked.emplace_back(n.pid, n.conn);
    if (leaked.empty())
        return;
    std::sort(leaked.begin(), leaked.end());
    for (const ProcessReport& p : snap.processes) {
        const auto from = std::lower_bound(leaked.begin(), leaked.end(), std::make_pair(p.pid, uint64_t{0}));
        auto to = from;
        while (to != leaked.end() && to->first == p.pid)
            ++to;
        if (from == to)
            continue;
        for (const ConnReport& c : p.connections)
            if (std::binary_search(from, to, std::make_pair(p.pid, c.conn)))
                source_.watch_release(p.pid, c.conn, c.acquired_ns);
    }
}

// The maps, with processes that exited moved to the archive (and freed in
// the kernel) and the archive added back.
RawState Session::collect()
{
    consume_events();  // first: an event read implies its counts in the maps
    // Exited processes archived by an earlier collect have had all their
    // events read by now: the oldest beyond the bound can be folded.
    while (recent_.size() > cfg_.keep_exited) {
        fold(recent_.front());
        recent_.pop_front();
    }
    RawState kernel = source_.read();
    RawState raw;
    raw.now_ns = kernel.now_ns;
    raw.wall_time_s = kernel.wall_time_s;
    std::set<uint32_t> archived;
    std::vector<uint32_t> gone;  // archived from a fresh read of their entries, all at once
    live_.clear();
    for (RawProcess& p : kernel.processes) {
        // kill(pid, 0) succeeds on a zombie, whose exit the kernel has
        // already marked; a process that is gone is archived from a fresh
        // read of its entry, never from this one, which may predate its
        // last connections.
        if (!p.stats.exited_ns && source_.process_exists(p.pid)) {
            p.comm = source_.comm(p.pid);
            comms_[p.pid] = p.comm;
            live_.insert(p.pid);
            raw.processes.push_back(p);
            continue;
        }
        archived.insert(p.pid);
        gone.push_back(p.pid);
    }
    if (!gone.empty()) {
        std::map<uint32_t, RawState> entries = source_.read_processes_of(gone);
        for (uint32_t pid : gone)
            if (auto e = entries.find(pid); e != entries.end())
                archive(pid, std::move(e->second), kernel.now_ns);
    }
    // Moved whole when no process was archived (most intervals; 100,000
    // handles at scale), else filtered.
    auto keep = [&](auto& from, auto& to) {
        if (archived.empty()) {
            to = std::move(from);
            return;
        }
        for (auto& e : from)
            if (!archived.count(e.pid))
                to.push_back(std::move(e));
    };
    keep(kernel.conns, raw.conns);
    keep(kernel.sites, raw.sites);
    keep(kernel.stacks, raw.stacks);
    // A pid used again: its earlier, exited holder is folded so the two
    // are never taken for one process.
    for (auto it = recent_.begin(); it != recent_.end();)
        if (live_.count(it->process.pid)) {
            fold(*it);
            it = recent_.erase(it);
        } else {
            ++it;
        }
    for (const Archived& a : recent_) {
        raw.processes.push_back(a.process);
        raw.conns.insert(raw.conns.end(), a.conns.begin(), a.conns.end());
        raw.sites.insert(raw.sites.end(), a.sites.begin(), a.sites.end());
        raw.stacks.insert(raw.stacks.end(), a.stacks.begin(), a.stacks.end());
    }
    for (const auto& [comm, group] : folded_)
        raw.exited_folded.push_back(group);
    stacks_.refine(raw);
    if (annotate_)
        annotate_(raw);
    return raw;
}

// `entry` was read again after the process was seen gone: the kernel marks
// the exit before the pid disappears, so it is final, whatever the first
// read saw.
void Session::archive(uint32_t pid, RawState entry, uint64_t now_ns)
{
    RawProcess p = entry.processes.front();
    // Gone with no exit seen (it exited while being added): nothing can
    // change its counts any more.
    if (!p.stats.exited_ns)
        p.stats.exited_ns = now_ns;
    if (p.comm.empty())
        p.comm = comms_.count(pid) ? comms_[pid] : "?";
    comms_.erase(pid);
    for (const RawSite& s : entry.sites)
        names_.name(s, false);  // nothing more can be learnt of it
    // A pid used again before its earlier holder was folded.
    for (auto it = recent_.begin(); it != recent_.end(); ++it)
        if (it->process.pid == pid) {
            fold(*it);
            recent_.erase(it);
            break;
        }
    source_.forget(entry);  // exactly what was kept, nothing read later
    stacks_.process_exited(pid);
    recent_.push_back({p, std::move(entry.conns), std::move(entry.sites), std::move(entry.stacks)});
}

void Session::fold(const Archived& a)
{
    RawState one;
    one.now_ns = a.process.stats.exited_ns;
    one.processes.push_back(a.process);
    one.conns = a.conns;
    one.sites = a.sites;
    one.stacks = a.stacks;
    stacks_.split(one);
    ModelOptions mopts = model_options();
    mopts.top_sites = std::numeric_limits<size_t>::max();  // every site, for exact per-site counts
    Snapshot snap = build_snapshot(one, mopts, [&](const RawSite& s) {
        return s.site.kind != SiteKey::Kind::caller ? stacks_.site_name(s.site) : names_.name(s, false);
    });
    for (const ProcessReport& p : snap.processes)
        fold_exited(folded_[p.comm], p);
}

}  // namespace connleak
