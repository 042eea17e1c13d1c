#include "server_join.h"

namespace connleak {

std::map<uint64_t, ServerMatch> match_sockets(const std::vector<HeldEndpoint>& held,
                                              const std::vector<ServerRead>& servers)
{
    // client_addr:client_port -> session, per server that was read.
    std::map<Peer, ServerMatch> by_client;
    std::map<uint32_t, ServerMatch> by_backend;  // for the Unix peers
    for (const ServerRead& r : servers) {
        if (!r.ok)
            continue;
        for (const ServerSession& s : r.sessions) {
            if (s.client.kind() == Peer::Kind::Inet)
                by_client.emplace(s.client, ServerMatch{&r, &s});
            by_backend.emplace(s.backend_pid, ServerMatch{&r, &s});
        }
    }
    std::map<uint64_t, ServerMatch> out;
    for (const HeldEndpoint& h : held) {
        if (h.local.kind() == Peer::Kind::Inet) {
            if (auto it = by_client.find(h.local); it != by_client.end())
                out[h.inode] = it->second;
            continue;
        }
        if (!h.unix_peer_inode)
            continue;
        for (const ServerRead& r : servers) {
            if (!r.ok)
                continue;
            auto b = r.backend_by_socket.find(h.unix_peer_inode);
            if (b == r.backend_by_socket.end())
                continue;
            for (const ServerSession& s : r.sessions)
                if (s.backend_pid == b->second)
                    out[h.inode] = {&r, &s};
        }
    }
    return out;
}

double age_now_ms(double age_at_read_ms, uint64_t read_ns, uint64_t now_ns)
{
    if (age_at_read_ms < 0)
        return -1;
    return age_at_read_ms + (now_ns > read_ns ? (now_ns - read_ns) / 1e6 : 0.0);
}

bool idle_in_transaction(const std::optional<std::string>& state)
{
    return state && state->rfind("idle in transaction", 0) == 0;
}

std::string cut_query(const std::string& q, size_t max)
{
    if (q.size() <= max)
        return q;
    size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(q[n]) & 0xC0) == 0x80)  // q[n] continues a sequence
        n--;
    return q.substr(0, n);
}

ServerConn server_conn(const ServerMatch& m, const ServerJoinInput& in)
{
    const ServerSession& s = *m.session;
    ServerConn c;
    c.server = m.read->server;
    c.backend_pid = s.backend_pid;
    c.state = s.state;
    c.backend_start = s.backend_start;
    c.xact_start = s.xact_start;
    c.state_change = s.state_change;
    c.wait_event = s.wait_event;
    if (in.queries && s.query)
        c.query = cut_query(*s.query, in.query_max);
    c.state_age_ms = age_now_ms(s.state_age_ms, m.read->read_ns, in.now_ns);
    return c;
}

}  // namespace connleak
