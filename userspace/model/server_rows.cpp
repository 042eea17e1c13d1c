#include "server_rows.h"

#include <algorithm>

namespace connleak {
namespace {

bool is_leak(const ServerConn& c, double age_ms, double leak_after_ms)
{
    return age_ms >= leak_after_ms || (idle_in_transaction(c.state) && c.state_age_ms >= leak_after_ms);
}

}  // namespace

// The one session with this backend PID over every server read, if just one.
static ServerMatch match_backend_pid(int32_t backend_pid, const std::vector<ServerRead>& servers)
{
    ServerMatch found;
    if (backend_pid <= 0)
        return found;
    for (const ServerRead& r : servers) {
        if (!r.ok)
            continue;
        for (const ServerSession& s : r.sessions)
            if (s.backend_pid == static_cast<uint32_t>(backend_pid)) {
                if (found.session)
                    return ServerMatch{};  // ambiguous: two servers have it
                found = ServerMatch{&r, &s};
            }
    }
    return found;
}

void join_server_view(Snapshot& snap, const ServerJoinInput& in)
{
    if (!in.enabled)
        return;
    for (const ServerRead& r : in.servers)
        snap.servers.push_back({r.server, r.ok, r.ok ? r.sessions.size() : 0});
    const double leak_after_ms = snap.leak_after_s * 1000.0;
    static const std::vector<HeldEndpoint> none;
    // A socket held since before the attach by several processes (a
    // preloaded master's connection inherited by its workers, all traced)
    // is one server connection: listed, and a leak, once, under the first
    // (lowest pid) that holds it.
    std::set<uint64_t> listed;
    for (ProcessReport& p : snap.processes) {
        if (p.exited)
            continue;
        auto h = in.held.find(p.pid);
        const std::vector<HeldEndpoint>& held = h != in.held.end() ? h->second : none;
        const std::map<uint64_t, ServerMatch> matches = match_sockets(held, in.servers);
        std::set<uint64_t> used;  // inodes of live handles
        for (ConnReport& c : p.connections) {
            auto s = p.sockets.conns.find(c.conn);
            if (s != p.sockets.conns.end() && s->second.inode)
                used.insert(s->second.inode);
            // The backend PID libpq holds in the handle says which backend
            // it is (unless two servers have that PID); else its socket.
            if (ServerMatch m = match_backend_pid(c.backend_pid, in.servers); m.session)
                c.server = std::make_shared<const ServerConn>(server_conn(m, in));
            else if (s != p.sockets.conns.end() && s->second.inode)
                if (auto sm = matches.find(s->second.inode); sm != matches.end())
                    c.server = std::make_shared<const ServerConn>(server_conn(sm->second, in));
        }
        auto pre = in.pre_attach.find(p.pid);
        if (pre == in.pre_attach.end())
            continue;
        uint64_t leaks = 0;
        for (const HeldEndpoint& e : held) {
            auto m = matches.find(e.inode);
            if (!pre->second.count(e.inode) || used.count(e.inode) || m == matches.end() ||
                !listed.insert(e.inode).second)
                continue;
            ServerConn sc = server_conn(m->second, in);
            sc.peer = e.remote.str();
            sc.socket = socket_state_name(SocketState::Live);
            ConnReport c;
            c.pre_attach = true;
            c.age_ms = std::max(0.0, age_now_ms(m->second.session->backend_age_ms, m->second.read->read_ns, in.now_ns));
            c.leak = is_leak(sc, c.age_ms, leak_after_ms);
            leaks += c.leak;
            c.server = std::make_shared<const ServerConn>(std::move(sc));
            p.connections.push_back(std::move(c));
        }
        std::stable_sort(p.connections.begin(), p.connections.end(),
                         [](const ConnReport& a, const ConnReport& b) { return a.age_ms > b.age_ms; });
        p.leaks += leaks;
        snap.totals.leaks += leaks;
    }
    if (snap.totals.acquired)
        snap.totals.leak_ratio = 100.0 * snap.totals.leaks / snap.totals.acquired;
}

}  // namespace connleak
