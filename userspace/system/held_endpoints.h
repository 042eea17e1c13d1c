// The sockets of a process with both ends, for the --server join: a TCP
// socket's local end (the server's client_addr:client_port) and a Unix
// socket's peer inode (the backend's own socket).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "proc_sockets.h"
#include "server_join.h"

namespace connleak {

// The tables of each network namespace, read once per round.
class EndpointScanner {
public:
    // Every socket pid holds that is connected somewhere ({} when unreadable).
    std::vector<HeldEndpoint> scan(uint32_t pid);
    // The socket inodes pid holds now ({} when unreadable).
    static std::set<uint64_t> inodes(uint32_t pid);

private:
    std::map<uint64_t, std::vector<InetSocket>> tcp_;  // by netns
    std::map<uint64_t, std::vector<UnixSocket>> unix_;
};

// Pure: a process's sockets given its inodes and its namespace's tables.
std::vector<HeldEndpoint> endpoints_of(const std::set<uint64_t>& inodes, const std::vector<InetSocket>& tcp,
                                       const std::vector<UnixSocket>& unix_sockets);

}  // namespace connleak
