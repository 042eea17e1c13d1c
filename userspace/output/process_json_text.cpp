#include "process_json_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <vector>

#include "conn_json_text.h"
#include "json_object_text.h"
#include "safe_text.h"

namespace connleak {
namespace {

// Milliseconds to one decimal, as json_output.cpp rounds them.
double round_ms(double ms)
{
    return std::round(ms * 10.0) / 10.0;
}

// {"key": count, ...}, keys escaped (peers', states' names); `indent`: of its closing brace.
void append_counts(std::string& out, const std::map<std::string, uint64_t>& counts, size_t indent)
{
    if (counts.empty()) {
        out += "{}";
        return;
    }
    ObjectText o(out, indent);
    for (const auto& [key, n] : counts)
        append_count(o.text_key(key), n);
}

// add_state_counts (handle_json.cpp): "states" then "pool_slots_lost".
void add_state_counts(ObjectText& o, const std::map<std::string, uint64_t>& states, uint64_t pool_slots_lost,
                      size_t indent)
{
    append_counts(o.key("states"), states, indent + 2);
    o.count("pool_slots_lost", pool_slots_lost);
}

// site_json (json_output.cpp).
void append_site(std::string& out, const SiteReport& s, size_t indent)
{
    ObjectText o(out, indent);
    o.text("site", utf8_text(s.site));
    o.count("acquired", s.acquired);
    o.count("released", s.released);
    o.count("active", s.active);
    o.count("leaks", s.leaks);
    o.count("leaked_at_exit", s.leaked_at_exit);
    o.number("avg_ms", round_ms(s.avg_ms));
    o.number("max_ms", round_ms(s.max_ms));
    if (s.frames)
        append_frames(o.key("frames"), s.frames, indent + 2);
    add_state_counts(o, s.states, s.pool_slots_lost, indent);
}

// socket_json (socket_json.cpp).
void append_sockets(std::string& out, const ProcessSocketReport& r, size_t indent)
{
    ObjectText o(out, indent);
    o.count("paired", r.paired);
    o.count("pre_attach", r.pre_attach);
    o.count("untracked", r.untracked);
    o.count("connecting", r.connecting);
    o.count("handles_without_socket", r.handles_without_socket);
    o.count("closed_at_exit", r.closed_at_exit);
    o.count("dropped", r.dropped);
    append_counts(o.key("pre_attach_peers"), r.pre_attach_peers, indent + 2);
    append_counts(o.key("untracked_peers"), r.untracked_peers, indent + 2);
}

// users_json (last_users_json.cpp): site and frames null when not known.
void append_last_user(std::string& out, const LastUserReport& u, size_t indent)
{
    ObjectText o(out, indent);
    if (u.site.empty()) {
        o.null("site");
        o.null("frames");
    } else {
        o.text("site", utf8_text(u.site));
        append_frames(o.key("frames"), u.frames, indent + 2);
    }
    o.count("connections", u.connections);
    o.count("pooled", u.pooled);
    o.count("checked_out", u.checked_out);
    o.count("leaks", u.leaks);
}

}  // namespace

void append_process_json(std::string& out, const ProcessReport& p, size_t listed, size_t indent)
{
    ObjectText o(out, indent);
    o.count("pid", p.pid);
    o.text("comm", utf8_text(p.comm));
    o.boolean("exited", p.exited);
    o.count("acquired", p.acquired);
    o.count("released", p.released);
    o.count("released_untracked", p.released_untracked);
    o.count("released_inherited", p.released_inherited);
    o.count("active", p.active);
    o.count("leaks", p.leaks);
    o.count("leaked_at_exit", p.leaked_at_exit);
    o.count("pings", p.pings);
    o.count("resets", p.resets);
    o.count("dropped", p.dropped);
    o.count("dropped_stacks", p.dropped_stacks);
    o.count("stacks_unwound", p.stacks_unwound);
    o.count("stacks_truncated", p.stacks_truncated);
    o.count("python_stacks", p.python_stacks);
    o.count("python_frames_truncated", p.python_truncated);
    if (p.sockets.tracked) {  // with_sockets: before the sites
        o.count("db_sockets", p.sockets.db_sockets);
        o.number("tracking_discrepancy", p.sockets.tracking_discrepancy);
        append_sockets(o.key("sockets"), p.sockets, indent + 2);
    }
    append_array(o.key("top_connection_users"), p.sites, indent + 2,
                 [&](const SiteReport& s, size_t at) { append_site(out, s, at); });
    std::string& conns = o.key("connections");
    const size_t n = std::min(listed, p.connections.size());
    if (n == 0) {
        conns += "[]";
    } else {
        conns += '[';
        ConnJsonWriter writer;
        for (size_t i = 0; i < n; i++) {
            conns += i ? ",\n" : "\n";
            conns.append(indent + 4, ' ');
            writer.append(conns, p.connections[i], p.sockets.tracked, indent + 4);
        }
        conns += '\n';
        conns.append(indent + 2, ' ');
        conns += ']';
    }
    o.count("connections_total", p.connections.size());
    if (p.container_id.empty() && p.pod_uid.empty()) {
        o.null("container");
    } else {
        ObjectText c(o.key("container"), indent + 2);
        c.text_or_null("id", !p.container_id.empty(), p.container_id);
        c.text_or_null("pod_uid", !p.pod_uid.empty(), p.pod_uid);
    }
    add_state_counts(o, p.states, p.pool_slots_lost, indent);
    append_array(o.key("last_users"), p.last_users, indent + 2,
                 [&](const LastUserReport& u, size_t at) { append_last_user(out, u, at); });
    o.count("last_users_total", p.last_users_total);
}

}  // namespace connleak
