#include "text_report.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "duration_text.h"
#include "last_user_text.h"
#include "last_users_table.h"
#include "safe_text.h"
#include "server_text.h"
#include "shown_frames.h"
#include "socket_text.h"
#include "strfmt.h"
#include "time_format.h"

namespace connleak {
namespace {

// Columns people see: UTF-8 continuation bytes take no column.
int display_width(const std::string& s)
{
    int w = 0;
    for (unsigned char c : s)
        w += (c & 0xc0) != 0x80;
    return w;
}

std::string process_header(const ProcessReport& p)
{
    std::string s =
        fmt("PID %u (%s)%s  acquired %" PRIu64 "  released %" PRIu64 "  active %" PRIu64 "  leaks %" PRIu64, p.pid,
            safe_text(p.comm).c_str(), p.exited ? " exited" : "", p.acquired, p.released, p.active, p.leaks);
    if (!p.container_id.empty())  // docker's short form
        s += "  container " + p.container_id.substr(0, 12);
    if (!p.pod_uid.empty())
        s += "  pod " + p.pod_uid;
    if (p.leaked_at_exit)
        s += fmt("  leaked at exit %" PRIu64, p.leaked_at_exit);
    if (p.released_untracked)
        s += fmt("  released untracked %" PRIu64, p.released_untracked);
    if (p.released_inherited)
        s += fmt("  released inherited %" PRIu64, p.released_inherited);
    if (p.pings)
        s += fmt("  pings %" PRIu64, p.pings);
    if (p.resets)
        s += fmt("  resets %" PRIu64, p.resets);
    if (p.dropped)
        s += fmt("  DROPPED %" PRIu64 " (maps full: counts are low)", p.dropped);
    if (p.dropped_stacks)
        s += fmt("  stacks dropped %" PRIu64, p.dropped_stacks);
    if (p.stacks_truncated)
        s += fmt("  stacks truncated %" PRIu64, p.stacks_truncated);
    // Not p.python_truncated: a web worker's stacks are deeper than the 32
    // Python frames kept, every one, and only their outermost frames (the
    // server's loop) go; said as an error on every report, it alarmed. JSON
    // keeps the count (python_frames_truncated).
    for (const auto& [state, n] : p.states)
        s += fmt("  %s %" PRIu64, state.c_str(), n);
    if (p.pool_slots_lost)
        s += fmt("  pool slots lost %" PRIu64, p.pool_slots_lost);
    return s + "\n";
}

uint64_t frames_digest(const std::vector<std::string>& frames)
{
    uint64_t h = frames.size();
    for (const std::string& f : frames)
        h = h * 1000003 ^ std::hash<std::string>{}(f);
    return h;
}

// The site's stack under its row, at most `shown` frames (shown_frames.h);
// with `printed`, only when not printed before as it is now.
std::string frame_lines(uint32_t pid, const SiteReport& r, size_t shown, StacksPrinted* printed)
{
    std::string s;
    if (!r.frames || !shown)
        return s;
    if (printed) {
        const uint64_t digest = frames_digest(*r.frames);
        auto [it, fresh] = printed->try_emplace({pid, r.site}, digest);
        if (!fresh && it->second == digest)
            return s;
        it->second = digest;
    }
    const std::vector<std::string_view> frames = shown_frames(*r.frames);
    for (size_t i = 0; i < frames.size(); i++) {
        if (i == shown) {
            s += fmt("      ... %zu more frames\n", frames.size() - shown);
            break;
        }
        s += "      at " + safe_text(frames[i]) + "\n";
    }
    return s;
}

std::string site_table(const ProcessReport& p, size_t frames_shown, StacksPrinted* printed)
{
    if (p.sites.empty())
        return "  no connections acquired while traced\n";
    // As wide as the longest site name, so long module names stay aligned.
    std::vector<std::string> names;
    int width = 4;
    for (const SiteReport& r : p.sites) {
        names.push_back(safe_text(r.site));
        width = std::max(width, display_width(names.back()));
    }
    std::string s = fmt("  %-*s %7s %9s %9s %7s %*s %*s\n", width, "SITE", "ACTIVE", "ACQUIRED", "RELEASED",
                        p.exited ? "AT EXIT" : "LEAKS", kDurationWidth, "AVG HOLD", kDurationWidth, "MAX HOLD");
    for (size_t i = 0; i < p.sites.size(); i++) {
        const SiteReport& r = p.sites[i];
        s += "  " + names[i] + std::string(static_cast<size_t>(width - display_width(names[i])), ' ');
        // No release, no mean hold: "-", not a 0.0 that reads as instant.
        const std::string avg = r.released ? format_duration(r.avg_ms) : "-";
        s += fmt(" %7" PRIu64 " %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %*s %*s\n", r.active, r.acquired, r.released,
                 p.exited ? r.leaked_at_exit : r.leaks, kDurationWidth, avg.c_str(), kDurationWidth,
                 format_duration(r.max_ms).c_str());
        s += frame_lines(p.pid, r, frames_shown, printed);
    }
    return s;
}

// "in_transaction*" (* pooled), "-" when the handle could not be read.
std::string connection_state_text(const ConnReport& c)
{
    if (!c.state_known)
        return "-";
    return std::string(conn_state_name(c.state)) + (c.pooled ? "*" : "");
}

std::string leaked_connections(const ProcessReport& p, double leak_after_s)
{
    std::string rows;
    bool server = false;  // --server joined some: a SERVER column
    for (const ConnReport& c : p.connections)
        server = server || c.server;
    for (const ConnReport& c : p.connections)
        if (c.leak) {
            rows += fmt("  %-18s %8s %*s %-15s  ", connection_cell(c).c_str(), thread_cell(c).c_str(), kDurationWidth,
                        format_duration(c.age_ms).c_str(), connection_state_text(c).c_str());
            if (server)
                rows += fmt("%-28s  ", server_cell(c).empty() ? "-" : server_cell(c).c_str());
            rows += safe_text(c.site);
            while (!rows.empty() && rows.back() == ' ')  // a pre-attach row names no site
                rows.pop_back();
            rows += "\n";
        }
    if (rows.empty())
        return "";
    return fmt("  connections held %gs or longer:\n  %-18s %8s %*s %-15s  ", leak_after_s, "CONNECTION", "THREAD",
               kDurationWidth, "HELD", "STATE") +
           (server ? fmt("%-28s  ", "SERVER") : "") + "SITE\n" + rows;
}

}  // namespace

std::string render_text_report(const Snapshot& snap, StacksPrinted* printed)
{
    if (printed) {  // processes gone from the report: their sites with them
        std::set<uint32_t> listed;
        for (const ProcessReport& p : snap.processes)
            listed.insert(p.pid);
        for (auto it = printed->begin(); it != printed->end();)
            it = listed.count(it->first.first) ? std::next(it) : printed->erase(it);
    }
    const Totals& t = snap.totals;
    std::string out = fmt("connleak %s  leak-after %gs  acquired %" PRIu64 "  released %" PRIu64 "  active %" PRIu64
                          "  leaks %" PRIu64 " (%.1f%%)",
                          format_utc(snap.wall_time_s).c_str(), snap.leak_after_s, t.acquired, t.released, t.active,
                          t.leaks, t.leak_ratio);
    if (t.leaked_at_exit)
        out += fmt("  leaked at exit %" PRIu64, t.leaked_at_exit);
    out += fmt("  dropped %" PRIu64, t.dropped);
    if (t.sockets_tracked)
        out += fmt("  db sockets %" PRIu64 "  discrepancy %+" PRId64, t.db_sockets, t.tracking_discrepancy);
    out += "\n";
    for (const ProcessReport& p : snap.processes)
        if (!quiet_helper(p))
            out += process_header(p) + socket_text(p.sockets, p.exited) + site_table(p, snap.frames_shown, printed) +
                   leaked_connections(p, snap.leak_after_s) + last_users_table_text(p) + last_users_text(p);
    if (std::string note = quiet_processes_note(snap); !note.empty())
        out += "  " + safe_text(note) + "\n";
    // Older exited processes, one line per comm (their sites are in the JSON).
    for (const ExitedGroup& g : snap.exited_folded)
        out += fmt("exited earlier: %" PRIu64 " x %s  acquired %" PRIu64 "  released %" PRIu64
                   "  leaked at exit %" PRIu64 "  dropped %" PRIu64 "\n",
                   g.processes, safe_text(g.comm).c_str(), g.acquired, g.released, g.leaked_at_exit, g.dropped);
    return out;
}

uint64_t pre_attach_sockets(const Snapshot& snap)
{
    uint64_t held = 0;
    for (const ProcessReport& p : snap.processes)
        if (!p.exited && p.sockets.tracked)
            held += p.sockets.pre_attach;
    return held;
}

std::string pre_attach_note(const Snapshot& snap)
{
    const uint64_t held = pre_attach_sockets(snap);
    if (!held)
        return "";
    // Sockets, not connections: a socket inherited by several traced
    // processes (a preloaded master's, in each worker) counts in each.
    return fmt("%" PRIu64 " database %s held since before the attach (not in acquired, active or leaks): "
               "--server DSN shows %s connection's age and state",
               held, held == 1 ? "socket" : "sockets", held == 1 ? "its" : "each");
}

bool add_pre_attach_note(std::string& report, const Snapshot& snap)
{
    const std::string note = pre_attach_note(snap);
    if (note.empty())
        return false;
    const size_t header_end = report.find('\n');
    report.insert(header_end == std::string::npos ? report.size() : header_end + 1, "  " + note + "\n");
    return true;
}

std::string quiet_processes_note(const Snapshot& snap)
{
    constexpr size_t kNamed = 3;  // one short line, however many helpers
    std::vector<const ProcessReport*> quiet;
    for (const ProcessReport& p : snap.processes)
        if (quiet_helper(p))
            quiet.push_back(&p);
    if (quiet.empty())
        return "";
    std::string out = fmt("not shown: %zu exited %s that made no libpq call and held no database socket:", quiet.size(),
                          quiet.size() == 1 ? "process" : "processes");
    for (size_t i = 0; i < quiet.size() && i < kNamed; i++)
        out += fmt("%s %s (pid %u)", i ? "," : "", quiet[i]->comm.c_str(), quiet[i]->pid);
    if (quiet.size() > kNamed)
        out += fmt(", and %zu more", quiet.size() - kNamed);
    return out;
}

}  // namespace connleak
