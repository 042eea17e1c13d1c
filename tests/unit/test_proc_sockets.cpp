// The /proc and sock_diag readers of proc_sockets: every kind of line (and
// netlink message) the kernel writes, and how they join into the sockets a
// process holds. Plus one look at this very process.
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proc_sockets.h"

using connleak::held_sockets;
using connleak::HeldSocket;
using connleak::InetSocket;
using connleak::is_local_pg_server;
using connleak::parse_proc_net_tcp;
using connleak::parse_proc_net_unix;
using connleak::parse_unix_diag;
using connleak::Peer;
using connleak::read_socket_inodes;
using connleak::socket_inode_of_link;
using connleak::SocketState;
using connleak::UnixSocket;

namespace {

// As net/ipv4/tcp_ipv4.c writes it (trailing spaces included).
const char* const kTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    "                                                     \n"
    "   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 25780 1 "
    "000000007940ca7e 100 0 0 10 0                     \n"
    "   1: 0100007F:D47F 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 675797 2 "
    "00000000fe647883 20 0 0 10 -1                    \n"
    "   2: 0A000001:9C40 0B000002:1F90 08 00000000:00000000 00:00000000 00000000     0        0 675800 2 "
    "00000000fe647883 20 0 0 10 -1                    \n"
    "   3: 0100007F:D480 0100007F:1538 06 00000000:00000000 03:00001770 00000000     0        0 0 3 "
    "0000000000000000\n";

const char* const kTcp6 =
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr "
    "tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000001000000:BBD2 00000000000000000000000001000000:1538 01 00000000:00000000 "
    "00:00000000 00000000     0        0 675797 2 00000000fe647883 20 0 0 10 -1\n"
    "   1: 0000000000000000FFFF00000100007F:BBD3 0000000000000000FFFF00000100007F:1538 02 00000000:00000000 "
    "00:00000000 00000000     0        0 675798 2 00000000fe647883 20 0 0 10 -1\n"
    "   2: B80D0120000000000000000001000000:BBD4 B80D0120000000000000000002000000:0050 01 00000000:00000000 "
    "00:00000000 00000000     0        0 675799 2 00000000fe647883 20 0 0 10 -1\n";

// As net/unix/af_unix.c writes it: the inode is padded, the path optional.
const char* const kUnix = "Num       RefCount Protocol Flags    Type St Inode Path\n"
                          "0000000081b34506: 00000002 00000000 00010000 0001 01 48427 /run/postgresql/.s.PGSQL.5432\n"
                          "00000000d7f68fe0: 00000003 00000000 00000000 0001 03    43\n"
                          "00000000d7f68fe1: 00000003 00000000 00000000 0001 03 50001 /run/postgresql/.s.PGSQL.5432\n"
                          "00000000d7f68fe2: 00000002 00000000 00000000 0002 01 50002 @/tmp/.X11-unix/X0\n"
                          "00000000d7f68fe3: 00000002 00000000 00000000 0001 02 50003\n"
                          "00000000d7f68fe4: 00000002 00000000 00000000 0001 01 50004 /tmp/with space.sock\n";

std::string v4(const Peer& p)
{
    return p.str();
}

// Builds one sock_diag reply the way net/unix/diag.c does.
class DiagBuffer {
public:
    void message(uint32_t inode, uint8_t type, uint8_t state, const std::string& name, const uint32_t* peer,
                 int shutdown)
    {
        size_t start = buf_.size();
        buf_.resize(start + NLMSG_HDRLEN);
        unix_diag_msg m{};
        m.udiag_family = AF_UNIX;
        m.udiag_type = type;
        m.udiag_state = state;
        m.udiag_ino = inode;
        append(&m, sizeof(m));
        if (!name.empty())
            attr(UNIX_DIAG_NAME, name.data(), name.size());
        if (peer)
            attr(UNIX_DIAG_PEER, peer, 4);
        if (shutdown >= 0) {
            uint8_t s = static_cast<uint8_t>(shutdown);
            attr(UNIX_DIAG_SHUTDOWN, &s, 1);
        }
        nlmsghdr h{};
        h.nlmsg_len = static_cast<uint32_t>(buf_.size() - start);
        h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        h.nlmsg_flags = NLM_F_MULTI;
        std::memcpy(&buf_[start], &h, sizeof(h));
        buf_.resize(start + NLMSG_ALIGN(buf_.size() - start));
    }
    void done()
    {
        nlmsghdr h{};
        h.nlmsg_len = NLMSG_LENGTH(sizeof(int));
        h.nlmsg_type = NLMSG_DONE;
        append(&h, sizeof(h));
        int zero = 0;
        append(&zero, sizeof(zero));
    }
    void error(int err)
    {
        nlmsghdr h{};
        h.nlmsg_len = NLMSG_LENGTH(sizeof(nlmsgerr));
        h.nlmsg_type = NLMSG_ERROR;
        append(&h, sizeof(h));
        nlmsgerr e{};
        e.error = -err;
        append(&e, sizeof(e));
    }
    const std::vector<char>& bytes() const { return buf_; }

private:
    void append(const void* p, size_t n)
    {
        const char* c = static_cast<const char*>(p);
        buf_.insert(buf_.end(), c, c + n);
    }
    void attr(unsigned short type, const void* data, size_t n)
    {
        rtattr a{};
        a.rta_type = type;
        a.rta_len = static_cast<unsigned short>(RTA_LENGTH(n));
        size_t start = buf_.size();
        append(&a, sizeof(a));
        append(data, n);
        buf_.resize(start + RTA_ALIGN(a.rta_len));
    }
    std::vector<char> buf_;
};

}  // namespace

TEST_CASE("socket inodes come from socket:[N] links only", "[proc_sockets]")
{
    CHECK(socket_inode_of_link("socket:[12345]") == 12345);
    CHECK(socket_inode_of_link("socket:[1]") == 1);
    CHECK(socket_inode_of_link("pipe:[12345]") == 0);
    CHECK(socket_inode_of_link("anon_inode:[eventfd]") == 0);
    CHECK(socket_inode_of_link("/dev/null") == 0);
    CHECK(socket_inode_of_link("socket:[]") == 0);
    CHECK(socket_inode_of_link("socket:[12a]") == 0);
    CHECK(socket_inode_of_link("socket:[12") == 0);
}

TEST_CASE("/proc/net/tcp: addresses, ports, states and inodes", "[proc_sockets]")
{
    auto t = parse_proc_net_tcp(kTcp, false);
    REQUIRE(t.size() == 4);
    CHECK(v4(t[0].local) == "127.0.0.1:5432");
    CHECK(t[0].state == 10);  // LISTEN
    CHECK(t[0].inode == 25780);
    CHECK(v4(t[1].local) == "127.0.0.1:54399");
    CHECK(v4(t[1].remote) == "127.0.0.1:5432");
    CHECK(t[1].state == 1);
    CHECK(t[1].inode == 675797);
    CHECK(v4(t[2].local) == "1.0.0.10:40000");
    CHECK(v4(t[2].remote) == "2.0.0.11:8080");
    CHECK(t[2].state == 8);  // CLOSE_WAIT
    CHECK(t[3].inode == 0);  // TIME_WAIT: no file any more
}

TEST_CASE("/proc/net/tcp6: IPv6, and IPv4-mapped addresses made IPv4", "[proc_sockets]")
{
    auto t = parse_proc_net_tcp(kTcp6, true);
    REQUIRE(t.size() == 3);
    CHECK(t[0].remote.str() == "[::1]:5432");
    CHECK(t[0].remote.v6());
    CHECK(t[1].remote.str() == "127.0.0.1:5432");
    CHECK_FALSE(t[1].remote.v6());
    CHECK(t[1].state == 2);
    CHECK(t[2].local.str() == "[2001:db8::1]:48084");
    CHECK(t[2].remote.str() == "[2001:db8::2]:80");
}

TEST_CASE("/proc/net/tcp: a header, blank or malformed lines are skipped", "[proc_sockets]")
{
    CHECK(parse_proc_net_tcp("", false).empty());
    CHECK(parse_proc_net_tcp("  sl  local_address rem_address   st\n\n", false).empty());
    CHECK(parse_proc_net_tcp("   0: 0100007F:ZZZZ 00000000:0000 0A 0:0 0:0 0 0 0 1\n", false).empty());
    CHECK(parse_proc_net_tcp("   0: 0100007F:1538 00000000:0000 0A 0:0 0:0 0 0 0 1\n", true).empty());  // v4 in tcp6
    CHECK(parse_proc_net_tcp("   0: 0100007F:1538 00000000:0000 0A 0:0 0:0 0 0 0 77\n", false).at(0).inode == 77);
}

TEST_CASE("/proc/net/unix: type, state, inode and path", "[proc_sockets]")
{
    auto u = parse_proc_net_unix(kUnix);
    REQUIRE(u.size() == 6);
    CHECK(u[0].inode == 48427);
    CHECK(u[0].state == UnixSocket::State::Listening);
    CHECK(u[0].name.str() == "/run/postgresql/.s.PGSQL.5432");
    CHECK(u[1].inode == 43);
    CHECK(u[1].state == UnixSocket::State::Connected);
    CHECK(u[1].name.kind() == Peer::Kind::None);
    CHECK(u[1].type == 1);
    CHECK_FALSE(u[1].has_peer);
    CHECK(u[1].shutdown == -1);
    CHECK(u[2].name.str() == "/run/postgresql/.s.PGSQL.5432");  // a server's accepted socket
    CHECK(u[3].type == 2);
    CHECK(u[3].name.str() == "@/tmp/.X11-unix/X0");
    CHECK(u[4].state == UnixSocket::State::Connecting);
    CHECK(u[5].name.str() == "/tmp/with space.sock");
}

TEST_CASE("sock_diag: inode, state, name, peer and shutdown of each socket", "[proc_sockets]")
{
    DiagBuffer b;
    uint32_t server_side = 700, client_side = 600, gone = 0;
    std::string path("/run/postgresql/.s.PGSQL.5432\0", 30);
    b.message(600, SOCK_STREAM, 1 /* ESTABLISHED */, "", &server_side, 0);
    b.message(700, SOCK_STREAM, 1, path, &client_side, 0);
    b.message(800, SOCK_STREAM, 1, "", &gone, 3);
    b.message(900, SOCK_STREAM, 10 /* LISTEN */, std::string("\0abstract", 9), nullptr, 0);
    b.message(950, SOCK_DGRAM, 7 /* CLOSE */, "", nullptr, -1);
    b.done();
    std::vector<UnixSocket> out;
    REQUIRE(parse_unix_diag(b.bytes().data(), b.bytes().size(), out) == 1);
    REQUIRE(out.size() == 5);
    CHECK(out[0].inode == 600);
    CHECK(out[0].state == UnixSocket::State::Connected);
    CHECK(out[0].has_peer);
    CHECK(out[0].peer_inode == 700);
    CHECK(out[0].shutdown == 0);
    CHECK(out[0].name.kind() == Peer::Kind::None);
    CHECK(out[1].name.str() == "/run/postgresql/.s.PGSQL.5432");  // the trailing NUL is not part of it
    CHECK(out[2].peer_inode == 0);
    CHECK(out[2].shutdown == 3);
    CHECK(out[3].state == UnixSocket::State::Listening);
    CHECK(out[3].name.str() == "@abstract");
    CHECK(out[4].type == SOCK_DGRAM);
    CHECK(out[4].state == UnixSocket::State::Unconnected);
    CHECK(out[4].shutdown == -1);
}

TEST_CASE("sock_diag: a dump spread over several reads, and errors", "[proc_sockets]")
{
    DiagBuffer first, last, err;
    first.message(1, SOCK_STREAM, 1, "", nullptr, 0);
    last.message(2, SOCK_STREAM, 1, "", nullptr, 0);
    last.done();
    err.error(ENOENT);
    std::vector<UnixSocket> out;
    CHECK(parse_unix_diag(first.bytes().data(), first.bytes().size(), out) == 0);
    CHECK(parse_unix_diag(last.bytes().data(), last.bytes().size(), out) == 1);
    CHECK(out.size() == 2);
    CHECK(parse_unix_diag(err.bytes().data(), err.bytes().size(), out) == -ENOENT);
    // A truncated buffer is not read past its end.
    CHECK(parse_unix_diag(first.bytes().data(), 10, out) == 0);
    CHECK(out.size() == 2);
}

TEST_CASE("held sockets: what a process's fds lead to, and in which state", "[proc_sockets]")
{
    auto tcp = parse_proc_net_tcp(kTcp, false);
    std::vector<UnixSocket> unix_sockets;
    auto unix_socket = [&](uint64_t ino, UnixSocket::State st, const std::string& name, bool has_peer, uint64_t peer,
                           int shutdown, int type = SOCK_STREAM) {
        UnixSocket s;
        s.inode = ino;
        s.type = type;
        s.state = st;
        if (!name.empty())
            s.name = Peer::unix_path(name.data(), name.size());
        s.has_peer = has_peer;
        s.peer_inode = peer;
        s.shutdown = shutdown;
        unix_sockets.push_back(s);
    };
    const std::string pg = "/run/postgresql/.s.PGSQL.5432";
    unix_socket(48427, UnixSocket::State::Listening, pg, false, 0, 0);
    unix_socket(600, UnixSocket::State::Connected, "", true, 700, 0);  // client of...
    unix_socket(700, UnixSocket::State::Connected, pg, true, 600, 0);  // ...the server's accepted socket
    unix_socket(601, UnixSocket::State::Connected, "", true, 0, 3);    // the server closed it
    unix_socket(602, UnixSocket::State::Unconnected, "", false, 0, 0);
    unix_socket(603, UnixSocket::State::Connected, "", true, 999, 0);  // peer in no table
    unix_socket(604, UnixSocket::State::Connected, "", true, 700, 0, SOCK_DGRAM);

    // 25780: LISTEN; 675797 ESTABLISHED; 675800 CLOSE_WAIT; 12345: UDP (in no table)
    std::set<uint64_t> fds = {25780, 675797, 675800, 12345, 48427, 600, 601, 602, 603, 604};
    auto held = held_sockets(fds, tcp, unix_sockets);
    std::map<uint64_t, HeldSocket> by;
    for (const HeldSocket& h : held)
        by[h.inode] = h;
    CHECK(by.size() == 6);
    CHECK_FALSE(by.count(25780));  // listening: nobody's peer
    CHECK_FALSE(by.count(48427));
    CHECK_FALSE(by.count(12345));
    CHECK_FALSE(by.count(604));  // datagram
    CHECK(by.at(675797).peer.str() == "127.0.0.1:5432");
    CHECK(by.at(675797).state == SocketState::Live);
    CHECK(by.at(675797).local.str() == "127.0.0.1:54399");  // the client's end, for "local"
    CHECK(by.at(675800).state == SocketState::PeerClosed);
    CHECK(by.at(675800).local.str() ==
          "1.0.0.10:40000");  // /proc/net/tcp holds the bytes in network order, printed as a little-endian word
    CHECK(by.at(600).peer.str() == pg);                // named by its peer's address
    CHECK(by.at(600).local.kind() == Peer::Kind::None);  // Unix: no address:port
    CHECK(by.at(600).state == SocketState::Live);
    CHECK(by.at(601).state == SocketState::PeerClosed);
    CHECK(by.at(601).peer.kind() == Peer::Kind::None);
    CHECK(by.at(602).state == SocketState::Closed);
    CHECK(by.at(603).peer.kind() == Peer::Kind::None);
    CHECK(by.at(603).state == SocketState::Live);
}

TEST_CASE("a local server is PostgreSQL's when .s.PGSQL.<port> listens beside it", "[proc_sockets]")
{
    auto v4 = [](uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
        const uint8_t addr[4] = {a, b, c, d};
        return Peer::inet4(addr, port);
    };
    auto inet = [](const Peer& local, const Peer& remote, int state) {
        InetSocket s;
        s.local = local;
        s.remote = remote;
        s.state = state;
        return s;
    };
    auto listening_unix = [](const std::string& path) {
        UnixSocket u;
        u.type = SOCK_STREAM;
        u.state = UnixSocket::State::Listening;
        u.name = Peer::unix_path(path.data(), path.size());
        return u;
    };
    constexpr int kListen = 10, kEstablished = 1;
    std::vector<InetSocket> tcp = {
        inet(v4(127, 0, 0, 1, 6001), v4(0, 0, 0, 0, 0), kListen),           // PostgreSQL on loopback
        inet(v4(0, 0, 0, 0, 6002), v4(0, 0, 0, 0, 0), kListen),             // on every address
        inet(v4(127, 0, 0, 1, 7000), v4(0, 0, 0, 0, 0), kListen),           // something else
        inet(v4(10, 1, 2, 3, 40000), v4(10, 9, 9, 9, 6002), kEstablished),  // 10.1.2.3 is local
    };
    std::vector<UnixSocket> unix_sockets = {listening_unix("/tmp/pg/.s.PGSQL.6001"),
                                            listening_unix("/run/postgresql/.s.PGSQL.6002"),
                                            listening_unix("/tmp/x.s.PGSQL.7000")};
    CHECK(is_local_pg_server(v4(127, 0, 0, 1, 6001), tcp, unix_sockets));
    CHECK_FALSE(is_local_pg_server(v4(127, 0, 0, 2, 6001), tcp, unix_sockets));  // no listener there
    CHECK(is_local_pg_server(v4(127, 0, 0, 5, 6002), tcp, unix_sockets));        // loopback, wildcard listener
    CHECK(is_local_pg_server(v4(10, 1, 2, 3, 6002), tcp, unix_sockets));         // a local address
    CHECK_FALSE(is_local_pg_server(v4(10, 9, 9, 9, 6002), tcp, unix_sockets));   // another host
    CHECK_FALSE(is_local_pg_server(v4(127, 0, 0, 1, 7000), tcp, unix_sockets));  // not .s.PGSQL.7000 itself
    CHECK_FALSE(is_local_pg_server(v4(127, 0, 0, 1, 7001), tcp, unix_sockets));
    unix_sockets[0].state = UnixSocket::State::Connected;  // a client's socket, not a listener
    CHECK_FALSE(is_local_pg_server(v4(127, 0, 0, 1, 6001), tcp, unix_sockets));
}

TEST_CASE("this process's socket inodes are read from /proc/self/fd", "[proc_sockets]")
{
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    auto inodes = read_socket_inodes(static_cast<uint32_t>(getpid()));
    REQUIRE(inodes);
    struct stat st;
    REQUIRE(fstat(sv[0], &st) == 0);
    CHECK(inodes.value().count(st.st_ino) == 1);
    close(sv[0]);
    close(sv[1]);
    CHECK_FALSE(read_socket_inodes(0x7ffffff0));  // no such process
}
