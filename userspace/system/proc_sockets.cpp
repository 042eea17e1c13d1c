#include "proc_sockets.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <map>
#include <sched.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace connleak {
namespace {

constexpr int kTcpEstablished = 1, kTcpSynSent = 2, kTcpSynRecv = 3, kTcpClose = 7, kTcpCloseWait = 8, kTcpListen = 10;
constexpr int kSockStream = 1;
constexpr unsigned kAcceptCon = 0x10000;  // __SO_ACCEPTCON in /proc/net/unix's Flags

bool parse_hex(std::string_view s, uint64_t& out)
{
    if (s.empty() || s.size() > 16)
        return false;
    uint64_t v = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return false;
        v = v << 4 | static_cast<uint64_t>(d);
    }
    out = v;
    return true;
}

bool parse_dec(std::string_view s, uint64_t& out)
{
    if (s.empty() || s.size() > 20)
        return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    out = v;
    return true;
}

std::vector<std::string_view> split_ws(std::string_view line)
{
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t')
            i++;
        if (i > start)
            out.push_back(line.substr(start, i - start));
    }
    return out;
}

template <typename F>
void for_each_line(std::string_view text, F f)
{
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos)
            nl = text.size();
        f(text.substr(pos, nl - pos));
        pos = nl + 1;
    }
}

// "0100007F:1538": the kernel prints each 32-bit word of the address as a
// host-order number (this is the host that printed it), the port as a number.
bool parse_endpoint(std::string_view s, bool v6, Peer& out)
{
    size_t colon = s.find(':');
    if (colon == std::string_view::npos)
        return false;
    std::string_view addr = s.substr(0, colon);
    uint64_t port;
    if (!parse_hex(s.substr(colon + 1), port) || port > 0xffff || addr.size() != (v6 ? 32u : 8u))
        return false;
    uint8_t bytes[16];
    for (size_t w = 0; w < addr.size() / 8; w++) {
        uint64_t word;
        if (!parse_hex(addr.substr(w * 8, 8), word))
            return false;
        uint32_t w32 = static_cast<uint32_t>(word);
        std::memcpy(bytes + 4 * w, &w32, 4);
    }
    out = v6 ? Peer::inet6(bytes, static_cast<uint16_t>(port)) : Peer::inet4(bytes, static_cast<uint16_t>(port));
    return true;
}

Result<std::string> read_file(const std::string& path)
{
    std::ifstream f(path);
    if (!f)
        return Error{"cannot read " + path + ": " + errstr(errno)};
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A NETLINK_SOCK_DIAG socket in pid's network namespace.
int diag_socket_in_netns_of(uint32_t pid)
{
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC);
    struct stat a {
    }, b{};
    bool other = self >= 0 && target >= 0 && fstat(self, &a) == 0 && fstat(target, &b) == 0 &&
                 (a.st_ino != b.st_ino || a.st_dev != b.st_dev);
    int fd = -1;
    if (!other || setns(target, CLONE_NEWNET) == 0) {
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if (other && setns(self, CLONE_NEWNET) != 0) {  // cannot go home: do not use it
            if (fd >= 0)
                close(fd);
            fd = -1;
        }
    }
    if (self >= 0)
        close(self);
    if (target >= 0)
        close(target);
    return fd;
}

Result<std::vector<UnixSocket>> unix_diag_dump(uint32_t pid)
{
    int fd = diag_socket_in_netns_of(pid);
    if (fd < 0)
        return Error{"sock_diag: " + errstr(errno)};
    struct {
        nlmsghdr nlh;
        unix_diag_req req;
    } msg{};
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.req.sdiag_family = AF_UNIX;
    msg.req.udiag_states = ~0u;
    msg.req.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, &msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
        int err = errno;
        close(fd);
        return Error{"sock_diag request: " + errstr(err)};
    }
    std::vector<UnixSocket> out;
    std::vector<char> buf(64 * 1024);
    for (;;) {
        ssize_t n = recv(fd, buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EPIPE;
            close(fd);
            return Error{"sock_diag dump: " + errstr(err)};
        }
        int r = parse_unix_diag(buf.data(), static_cast<size_t>(n), out);
        if (r < 0) {
            close(fd);
            return Error{"sock_diag dump: " + errstr(r)};
        }
        if (r == 1)
            break;
    }
    close(fd);
    return out;
}

}  // namespace

uint64_t socket_inode_of_link(std::string_view link)
{
    static constexpr std::string_view prefix = "socket:[";
    if (link.substr(0, prefix.size()) != prefix || link.size() < prefix.size() + 2 || link.back() != ']')
        return 0;
    uint64_t ino = 0;
    if (!parse_dec(link.substr(prefix.size(), link.size() - prefix.size() - 1), ino))
        return 0;
    return ino;
}

std::vector<InetSocket> parse_proc_net_tcp(std::string_view text, bool v6)
{
    std::vector<InetSocket> out;
    for_each_line(text, [&](std::string_view line) {
        auto t = split_ws(line);
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        if (t.size() < 10 || t[0].empty() || t[0].back() != ':')
            return;
        InetSocket s;
        uint64_t st, ino;
        if (!parse_endpoint(t[1], v6, s.local) || !parse_endpoint(t[2], v6, s.remote) || !parse_hex(t[3], st) ||
            !parse_dec(t[9], ino))
            return;
        s.state = static_cast<int>(st);
        s.inode = ino;
        out.push_back(s);
    });
    return out;
}

std::vector<UnixSocket> parse_proc_net_unix(std::string_view text)
{
    std::vector<UnixSocket> out;
    for_each_line(text, [&](std::string_view line) {
        auto t = split_ws(line);
        // Num: RefCount Protocol Flags Type St Inode [Path]
        if (t.size() < 7 || t[0].empty() || t[0].back() != ':')
            return;
        uint64_t flags, type, st, ino;
        if (!parse_hex(t[3], flags) || !parse_hex(t[4], type) || !parse_hex(t[5], st) || !parse_dec(t[6], ino))
            return;
        UnixSocket s;
        s.inode = ino;
        s.type = static_cast<int>(type);
        if (flags & kAcceptCon)
            s.state = UnixSocket::State::Listening;
        else if (st == 1)
            s.state = UnixSocket::State::Unconnected;
        else if (st == 2)
            s.state = UnixSocket::State::Connecting;
        else if (st == 3)
            s.state = UnixSocket::State::Connected;
        else
            s.state = UnixSocket::State::Unknown;
        if (t.size() > 7) {  // the path: the rest of the line (it may hold spaces)
            size_t at = static_cast<size_t>(t[7].data() - line.data());
            std::string path(line.substr(at));
            s.name = Peer::unix_name(path);  // abstract names are already shown as "@name"
        }
        out.push_back(std::move(s));
    });
    return out;
}

int parse_unix_diag(const void* buf, size_t len, std::vector<UnixSocket>& out)
{
    int left = static_cast<int>(len);
    for (auto* h = static_cast<const nlmsghdr*>(buf); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
        if (h->nlmsg_type == NLMSG_DONE)
            return 1;
        if (h->nlmsg_type == NLMSG_ERROR) {
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
                return -EBADMSG;
            auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
            return e->error ? (e->error < 0 ? e->error : -e->error) : -EBADMSG;
        }
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg)))
            continue;
        auto* m = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
        UnixSocket s;
        s.inode = m->udiag_ino;
        s.type = m->udiag_type;
        switch (m->udiag_state) {
        case kTcpEstablished:
            s.state = UnixSocket::State::Connected;
            break;
        case kTcpSynSent:
            s.state = UnixSocket::State::Connecting;
            break;
        case kTcpClose:
            s.state = UnixSocket::State::Unconnected;
            break;
        case kTcpListen:
            s.state = UnixSocket::State::Listening;
            break;
        default:
            s.state = UnixSocket::State::Unknown;
        }
        int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
        for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) + NLMSG_ALIGN(sizeof(*m)));
             RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
            const char* data = static_cast<const char*>(RTA_DATA(a));
            size_t dlen = RTA_PAYLOAD(a);
            if (a->rta_type == UNIX_DIAG_NAME && dlen > 0) {
                s.name = Peer::unix_path(data, dlen);
            } else if (a->rta_type == UNIX_DIAG_PEER && dlen >= 4) {
                uint32_t peer;
                std::memcpy(&peer, data, 4);
                s.has_peer = true;
                s.peer_inode = peer;
            } else if (a->rta_type == UNIX_DIAG_SHUTDOWN && dlen >= 1) {
                s.shutdown = static_cast<uint8_t>(data[0]);
            }
        }
        out.push_back(std::move(s));
    }
    return 0;
}

std::vector<HeldSocket> held_sockets(const std::set<uint64_t>& inodes, const std::vector<InetSocket>& tcp,
                                     const std::vector<UnixSocket>& unix_sockets)
{
    std::map<uint64_t, const InetSocket*> tcp_by_inode;
    for (const InetSocket& s : tcp)
        if (s.inode)
            tcp_by_inode[s.inode] = &s;
    std::map<uint64_t, const UnixSocket*> unix_by_inode;
    for (const UnixSocket& s : unix_sockets)
        unix_by_inode[s.inode] = &s;

    std::vector<HeldSocket> out;
    for (uint64_t ino : inodes) {
        HeldSocket h;
        h.inode = ino;
        if (auto it = tcp_by_inode.find(ino); it != tcp_by_inode.end()) {
            const InetSocket& s = *it->second;
            if (s.state == kTcpListen)
                continue;
            h.peer = s.remote;
            h.local = s.local;
            if (s.state == kTcpEstablished || s.state == kTcpSynSent || s.state == kTcpSynRecv)
                h.state = SocketState::Live;
            else if (s.state == kTcpCloseWait)
                h.state = SocketState::PeerClosed;
            else
                h.state = SocketState::Closed;
            out.push_back(h);
            continue;
        }
        auto it = unix_by_inode.find(ino);
        if (it == unix_by_inode.end())
            continue;  // neither TCP nor Unix (UDP, netlink, ...)
        const UnixSocket& s = *it->second;
        if (s.type != kSockStream || s.state == UnixSocket::State::Listening)
            continue;
        if (s.has_peer && s.peer_inode)
            if (auto p = unix_by_inode.find(s.peer_inode); p != unix_by_inode.end())
                h.peer = p->second->name;
        switch (s.state) {
        case UnixSocket::State::Connected:
            h.state = s.shutdown > 0 || (s.has_peer && !s.peer_inode) ? SocketState::PeerClosed : SocketState::Live;
            break;
        case UnixSocket::State::Unconnected:
            h.state = SocketState::Closed;
            break;
        default:
            h.state = SocketState::Live;
        }
        out.push_back(h);
    }
    return out;
}

bool is_local_pg_server(const Peer& peer, const std::vector<InetSocket>& tcp,
                        const std::vector<UnixSocket>& unix_sockets)
{
    if (peer.kind() != Peer::Kind::Inet)
        return false;
    const std::string name = ".s.PGSQL." + std::to_string(peer.port());
    bool pg_unix = false;
    for (const UnixSocket& u : unix_sockets) {
        const std::string& path = u.name.path();
        if (u.state == UnixSocket::State::Listening && u.name.kind() == Peer::Kind::Unix && path.size() >= name.size() &&
            path.compare(path.size() - name.size(), name.size(), name) == 0 &&
            (path.size() == name.size() || path[path.size() - name.size() - 1] == '/'))
            pg_unix = true;
    }
    if (!pg_unix)
        return false;
    auto unspecified = [](const Peer& p) {
        const std::array<uint8_t, 16> a = p.addr();
        return std::all_of(a.begin(), a.begin() + (p.v6() ? 16 : 4), [](uint8_t b) { return b == 0; });
    };
    auto loopback = [](const Peer& p) {
        static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return p.v6() ? std::memcmp(p.addr().data(), v6_loopback, 16) == 0 : p.addr()[0] == 127;
    };
    auto same_addr = [](const Peer& a, const Peer& b) { return a.v6() == b.v6() && a.addr() == b.addr(); };
    bool local = loopback(peer);
    for (const InetSocket& s : tcp)
        if (!local && s.state != kTcpListen && same_addr(s.local, peer))
            local = true;
    for (const InetSocket& s : tcp)
        if (s.state == kTcpListen && s.local.port() == peer.port() &&
            (same_addr(s.local, peer) || (unspecified(s.local) && local)))
            return true;
    return false;
}

Result<std::set<uint64_t>> read_socket_inodes(uint32_t pid)
{
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (!d)
        return Error{"cannot list " + dir + ": " + errstr(errno)};
    std::set<uint64_t> out;
    char link[64];
    while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        if (n <= 0)
            continue;  // closed meanwhile
        if (uint64_t ino = socket_inode_of_link(std::string_view(link, static_cast<size_t>(n))))
            out.insert(ino);
    }
    closedir(d);
    return out;
}

uint64_t open_fd_count(uint32_t pid)
{
    char path[32];
    std::snprintf(path, sizeof(path), "/proc/%u/fd", pid);
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

uint64_t netns_of(uint32_t pid)
{
    struct stat st;
    if (stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &st) != 0)
        return 0;
    return st.st_ino;
}

Result<std::vector<InetSocket>> read_tcp_sockets(uint32_t pid)
{
    std::string base = "/proc/" + std::to_string(pid) + "/net/";
    auto v4 = read_file(base + "tcp");
    if (!v4)
        return v4.error();
    std::vector<InetSocket> out = parse_proc_net_tcp(v4.value(), false);
    if (auto v6 = read_file(base + "tcp6"))  // absent without IPv6
        for (InetSocket& s : parse_proc_net_tcp(v6.value(), true))
            out.push_back(s);
    return out;
}

Result<std::vector<UnixSocket>> read_unix_sockets(uint32_t pid)
{
    if (auto diag = unix_diag_dump(pid))
        return diag;
    auto text = read_file("/proc/" + std::to_string(pid) + "/net/unix");
    if (!text)
        return text.error();
    return parse_proc_net_unix(text.value());
}

}  // namespace connleak
