#include "held_endpoints.h"

namespace connleak {

std::vector<HeldEndpoint> endpoints_of(const std::set<uint64_t>& inodes, const std::vector<InetSocket>& tcp,
                                       const std::vector<UnixSocket>& unix_sockets)
{
    std::vector<HeldEndpoint> out;
    for (const InetSocket& t : tcp)
        if (t.inode && inodes.count(t.inode) && t.remote.port())
            out.push_back({t.inode, t.local, t.remote, 0});
    std::map<uint64_t, const UnixSocket*> by_inode;
    for (const UnixSocket& u : unix_sockets)
        by_inode[u.inode] = &u;
    for (const UnixSocket& u : unix_sockets) {
        if (!inodes.count(u.inode) || !u.has_peer || !u.peer_inode)
            continue;
        HeldEndpoint e{u.inode, u.name, {}, u.peer_inode};
        if (auto p = by_inode.find(u.peer_inode); p != by_inode.end())
            e.remote = p->second->name;  // an accepted socket carries its listener's path
        out.push_back(e);
    }
    return out;
}

std::set<uint64_t> EndpointScanner::inodes(uint32_t pid)
{
    auto r = read_socket_inodes(pid);
    return r ? r.value() : std::set<uint64_t>{};
}

std::vector<HeldEndpoint> EndpointScanner::scan(uint32_t pid)
{
    const std::set<uint64_t> held = inodes(pid);
    if (held.empty())
        return {};
    const uint64_t ns = netns_of(pid);
    if (!tcp_.count(ns)) {
        auto t = read_tcp_sockets(pid);
        tcp_[ns] = t ? t.value() : std::vector<InetSocket>{};
        auto u = read_unix_sockets(pid);
        unix_[ns] = u ? u.value() : std::vector<UnixSocket>{};
    }
    return endpoints_of(held, tcp_[ns], unix_[ns]);
}

}  // namespace connleak
