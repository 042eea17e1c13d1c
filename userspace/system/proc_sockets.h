// The sockets a process holds, read from /proc and sock_diag: which inodes
// its fds are (/proc/PID/fd), where its TCP sockets lead and in which state
// (/proc/PID/net/tcp, tcp6), and where its Unix sockets lead (sock_diag:
// /proc/net/unix has no peers; it is the fallback without UNIX_DIAG).
//
// The parse_* functions are pure (text or bytes in), for unit tests.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"
#include "socket_model.h"

namespace connleak {

// "socket:[12345]" -> 12345; 0 for anything else.
uint64_t socket_inode_of_link(std::string_view link);

struct InetSocket {
    uint64_t inode = 0;  // 0: no longer owned by a file (TIME_WAIT, orphans)
    Peer local, remote;
    int state = 0;  // TCP_ESTABLISHED = 1, ... as in the kernel
};

// /proc/PID/net/tcp (v6 = false) or tcp6. Malformed lines are skipped.
std::vector<InetSocket> parse_proc_net_tcp(std::string_view text, bool v6);

struct UnixSocket {
    enum class State : uint8_t { Unknown, Unconnected, Connecting, Connected, Listening };
    uint64_t inode = 0;
    int type = 0;  // SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5
    State state = State::Unknown;
    Peer name;                // its own bound address (kind None: unbound)
    bool has_peer = false;    // sock_diag only
    uint64_t peer_inode = 0;  // 0 once the peer was released
    int shutdown = -1;        // sock_diag only: sk_shutdown (3: the peer closed); -1 unknown
};

// /proc/PID/net/unix.
std::vector<UnixSocket> parse_proc_net_unix(std::string_view text);

// One recv() of a NETLINK_SOCK_DIAG dump of AF_UNIX sockets, appended to
// out. Returns 1 when NLMSG_DONE was seen, 0 when more is to come, or
// -errno for an NLMSG_ERROR.
int parse_unix_diag(const void* buf, size_t len, std::vector<UnixSocket>& out);

// What a process holds, given its socket inodes and the tables of its
// network namespace. A Unix socket's peer is named by the peer's own
// address (a server's accepted socket carries its listener's path).
std::vector<HeldSocket> held_sockets(const std::set<uint64_t>& inodes, const std::vector<InetSocket>& tcp,
                                     const std::vector<UnixSocket>& unix_sockets);

// Whether a TCP peer is a PostgreSQL server (or a pooler speaking its
// protocol) of this network namespace, by its tables: a listener on the
// peer's port, at the peer's address or a wildcard one (then the peer must
// be local: loopback, or the local address of some socket here), next to
// a listening Unix socket named .s.PGSQL.<that port>, as PostgreSQL and
// pgbouncer open.
bool is_local_pg_server(const Peer& peer, const std::vector<InetSocket>& tcp,
                        const std::vector<UnixSocket>& unix_sockets);

// --- reading the live system ---

// The socket inodes in /proc/PID/fd.
Result<std::set<uint64_t>> read_socket_inodes(uint32_t pid);

// How many fds the process has open: the size stat() gives /proc/PID/fd
// (kernel >= 6.2). 0 when not known (older kernels say 0, or it is gone).
uint64_t open_fd_count(uint32_t pid);

// The inode of /proc/PID/ns/net (0 if unreadable): one table read per namespace.
uint64_t netns_of(uint32_t pid);

// TCP sockets (v4 and v6) of pid's network namespace.
Result<std::vector<InetSocket>> read_tcp_sockets(uint32_t pid);

// Unix sockets of pid's network namespace, with peers (sock_diag, from
// inside that namespace); without UNIX_DIAG, /proc/PID/net/unix (no peers).
Result<std::vector<UnixSocket>> read_unix_sockets(uint32_t pid);

}  // namespace connleak
