#include "json_output.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <numeric>

#include "handle_json.h"
#include "last_users_json.h"
#include "notice_json_text.h"
#include "process_json_text.h"
#include "safe_text.h"
#include "server_json.h"
#include "socket_json.h"
#include "time_format.h"

namespace connleak {
namespace {

using json = nlohmann::ordered_json;

// Milliseconds to one decimal: enough for people, stable for diffs.
double round_ms(double ms)
{
    return std::round(ms * 10.0) / 10.0;
}

std::string hex_address(uint64_t addr)
{
    char buf[2 + 16 + 1];
    std::snprintf(buf, sizeof(buf), "0x%" PRIx64, addr);
    return buf;
}

// 30, not 30.0, for whole seconds (as people wrote them).
json seconds_json(double s)
{
    if (s == std::floor(s) && s >= 0 && s < 1e15)
        return static_cast<uint64_t>(s);
    return s;
}

json frames_json(const Frames& frames)
{
    json out = json::array();
    if (frames)
        for (const std::string& f : *frames)
            out.push_back(utf8_text(f));
    return out;
}

json site_json(const SiteReport& s)
{
    json j = {{"site", utf8_text(s.site)},
              {"acquired", s.acquired},
              {"released", s.released},
              {"active", s.active},
              {"leaks", s.leaks},
              {"leaked_at_exit", s.leaked_at_exit},
              {"avg_ms", round_ms(s.avg_ms)},
              {"max_ms", round_ms(s.max_ms)}};
    if (s.frames)
        j["frames"] = frames_json(s.frames);
    add_state_counts(j, s.states, s.pool_slots_lost);
    return j;
}

json notice_json(const Notice& n)
{
    return {{"seq", n.seq},
            {"kind", n.kind},
            {"time", format_utc(n.wall_time_s)},
            {"pid", n.pid},
            {"tid", n.tid},
            {"comm", utf8_text(n.comm)},
            {"conn", hex_address(n.conn)},
            {n.kind == "leak" ? "age_ms" : "held_ms", round_ms(n.age_ms)},
            {"site", utf8_text(n.site)},
            {"frames", frames_json(n.frames)}};
}

// sockets_tracked: the process's sockets were read, so each handle says its socket.
json conn_json(const ConnReport& c, bool sockets_tracked)
{
    json out = {{"conn", hex_address(c.conn)},
                {"tid", c.tid},
                {"site", utf8_text(c.site)},
                {"age_ms", round_ms(c.age_ms)},
                {"leak", c.leak}};
    if (sockets_tracked) {
        out["peer"] = c.peer.empty() ? json(nullptr) : json(c.peer);
        const std::string local = c.local.str();
        out["local"] = local.empty() ? json(nullptr) : json(local);
        out["socket"] = c.socket;
    }
    // Traffic on its socket: null when not known (no socket tracking, no use seen).
    out["idle_ms"] = c.idle_ms >= 0 ? json(round_ms(c.idle_ms)) : json(nullptr);
    out["last_used_site"] = c.last_used_site.empty() ? json(nullptr) : json(utf8_text(c.last_used_site));
    out["last_used_frames"] = c.last_used_site.empty() ? json(nullptr) : frames_json(c.last_used_frames);
    return out;
}

// {id, pod_uid} of the process's container, null outside any (or when
// neither is known); an absent part is null.
json container_json(const ProcessReport& p)
{
    if (p.container_id.empty() && p.pod_uid.empty())
        return nullptr;
    auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    return {{"id", or_null(p.container_id)}, {"pod_uid", or_null(p.pod_uid)}};
}

// The first `listed` of its connections (connections_listed); 0:
// connections[] left empty (snapshot_text writes it).
json process_json(const ProcessReport& p, size_t listed)
{
    json sites = json::array(), conns = json::array();
    for (const auto& s : p.sites)
        sites.push_back(site_json(s));
    // connections[] is oldest first, so the leaks come first and stay.
    for (size_t i = 0; i < p.connections.size() && i < listed; i++) {
        conns.push_back(conn_json(p.connections[i], p.sockets.tracked));
        add_handle_keys(conns.back(), p.connections[i]);
    }
    return {{"pid", p.pid},
            {"comm", utf8_text(p.comm)},
            {"exited", p.exited},
            {"acquired", p.acquired},
            {"released", p.released},
            {"released_untracked", p.released_untracked},
            {"released_inherited", p.released_inherited},
            {"active", p.active},
            {"leaks", p.leaks},
            {"leaked_at_exit", p.leaked_at_exit},
            {"pings", p.pings},
            {"resets", p.resets},
            {"dropped", p.dropped},
            {"dropped_stacks", p.dropped_stacks},
            {"stacks_unwound", p.stacks_unwound},
            {"stacks_truncated", p.stacks_truncated},
            {"python_stacks", p.python_stacks},
            {"python_frames_truncated", p.python_truncated},
            {"top_connection_users", std::move(sites)},
            {"connections", std::move(conns)},
            {"connections_total", p.connections.size()},
            {"container", container_json(p)}};
}

json exited_group_json(const ExitedGroup& g)
{
    json sites = json::array();
    for (const auto& s : g.sites)
        sites.push_back(site_json(s));
    return {{"comm", utf8_text(g.comm)},
            {"processes", g.processes},
            {"acquired", g.acquired},
            {"released", g.released},
            {"released_untracked", g.released_untracked},
            {"released_inherited", g.released_inherited},
            {"leaked_at_exit", g.leaked_at_exit},
            {"pings", g.pings},
            {"resets", g.resets},
            {"dropped", g.dropped},
            {"dropped_stacks", g.dropped_stacks},
            {"stacks_unwound", g.stacks_unwound},
            {"stacks_truncated", g.stacks_truncated},
            {"sites", std::move(sites)}};
}

// One entry of processes[], every key of it, its first `listed`
// connections in connections[].
json process_entry(const Snapshot& snap, const ProcessReport& p, size_t listed)
{
    json entry = with_server(with_sockets(process_json(p, listed), p.sockets), p, !snap.servers.empty());
    add_state_counts(entry, p.states, p.pool_slots_lost);
    add_process_last_users(entry, p);
    return entry;
}

// The snapshot with processes[] left empty (the caller fills it with
// `listed` connections in all), and notices[] too unless `with_notices`.
json snapshot_without_processes(const Snapshot& snap, size_t listed, bool with_notices = true)
{
    const Totals& t = snap.totals;
    json procs = json::array();
    json notices = json::array();
    for (size_t i = 0; with_notices && i < snap.notices.size(); i++) {
        notices.push_back(notice_json(snap.notices[i]));
        add_notice_pool_keys(notices.back(), snap.notices[i]);
    }
    json out = {{"version", 1},
                {"time", format_utc(snap.wall_time_s)},
                {"leak_after_s", seconds_json(snap.leak_after_s)},
                {"tracking_stats",
                 {{"total_acquired", t.acquired},
                  {"total_released", t.released},
                  {"total_active", t.active},
                  {"total_leaks", t.leaks},
                  {"leak_ratio", std::round(t.leak_ratio * 100.0) / 100.0},
                  {"total_leaked_at_exit", t.leaked_at_exit},
                  {"total_dropped", t.dropped}}},
                {"processes", std::move(procs)},
                {"notices", std::move(notices)}};
    json folded = json::array();
    for (const auto& g : snap.exited_folded)
        folded.push_back(exited_group_json(g));
    out["exited_folded"] = std::move(folded);
    out["exited_folded_processes"] = snap.exited_folded_processes;
    add_snapshot_last_users(out, snap);
    out["connections_listed"] = listed;
    if (!snap.servers.empty())
        out["servers"] = servers_json(snap.servers);
    if (t.sockets_tracked) {
        out["tracking_stats"]["total_db_sockets"] = t.db_sockets;
        out["tracking_stats"]["tracking_discrepancy"] = t.tracking_discrepancy;
    }
    return out;
}

// `text`, a value dumped with indent 2, as it reads `spaces` deeper: JSON
// text holds raw newlines only between tokens, never inside a string.
void append_indented(std::string& out, const std::string& text, size_t spaces)
{
    size_t from = 0;
    for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', from)) {
        out.append(text, from, nl + 1 - from);
        out.append(spaces, ' ');
        from = nl + 1;
    }
    out.append(text, from, std::string::npos);
}

// processes[i] at its depth in the document: written as text
// (process_json_text), or with --server, whose keys join each connection's
// object, as a tree like the rest.
void append_process(std::string& out, const Snapshot& snap, const ProcessReport& p, size_t listed)
{
    if (!snap.servers.empty()) {
        append_indented(out, process_entry(snap, p, listed).dump(2), 4);
        return;
    }
    append_process_json(out, p, listed, 4);
}

}  // namespace

json snapshot_to_json(const Snapshot& snap)
{
    const std::vector<size_t> listed = connections_listed(snap);
    json out = snapshot_without_processes(snap, std::accumulate(listed.begin(), listed.end(), size_t{0}));
    json& procs = out["processes"];
    for (size_t i = 0; i < snap.processes.size(); i++)
        procs.push_back(process_entry(snap, snap.processes[i], listed[i]));
    return out;
}

std::string snapshot_text(const Snapshot& snap)
{
    std::string out;
    write_snapshot_text(snap, [&](std::string_view piece) { out += piece; });
    return out;
}

void write_snapshot_text(const Snapshot& snap, const std::function<void(std::string_view piece)>& put)
{
    // The bytes of snapshot_document(snapshot_to_json(snap)), with one
    // process's tree in memory at a time, not every listed connection's.
    constexpr size_t kPiece = 1 << 20;
    const std::vector<size_t> listed = connections_listed(snap);
    // processes[] and notices[] written as text, the rest as trees.
    const json head = snapshot_without_processes(snap, std::accumulate(listed.begin(), listed.end(), size_t{0}), false);
    std::string out = "{";
    bool first = true;
    for (auto it = head.begin(); it != head.end(); ++it) {
        out += first ? "\n  " : ",\n  ";
        first = false;
        out += json(it.key()).dump();
        out += ": ";
        if (it.key() == "notices") {
            append_notices_json(out, snap.notices, 2);
            continue;
        }
        if (it.key() != "processes" || snap.processes.empty()) {
            append_indented(out, it.value().dump(2), 2);
            continue;
        }
        out += "[";
        for (size_t i = 0; i < snap.processes.size(); i++) {
            out += i ? ",\n    " : "\n    ";
            append_process(out, snap, snap.processes[i], listed[i]);
            if (out.size() >= kPiece) {
                put(out);
                out.clear();
            }
        }
        out += "\n  ]";
    }
    out += first ? "}\n" : "\n}\n";
    put(out);
}

}  // namespace connleak
