#include "socket_model.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

namespace connleak {
namespace {

const uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool contains(const std::vector<std::string>& v, const std::string& s)
{
    return std::find(v.begin(), v.end(), s) != v.end();
}

// A record that may be libpq's connection to its server: libpq's own
// lookups (nscd over a Unix socket, inside PQconnectPoll too) are not.
bool server_candidate(const SocketRecord& r, const DbServers& rules)
{
    return r.tcp() || is_pg_socket_path(r.peer.path()) || contains(rules.paths, r.peer.path());
}

// The state of a recorded socket: the scan says whether the process holds
// it; the TCP hooks say what happened since.
SocketState record_state(const SocketRecord& r, const ProcessScan& scan,
                         const std::map<uint64_t, const HeldSocket*>& held)
{
    SocketState s = SocketState::Live;
    if (scan.ok) {
        auto it = held.find(r.inode);
        if (it != held.end())
            s = it->second->state;
        else if (r.connect_ns < scan.time_ns)
            s = SocketState::Closed;  // connected before the scan, not held in it
    }
    if (r.tcp()) {
        if (r.closed_ns)
            s = SocketState::Closed;
        else if (r.peer_closed_ns && s == SocketState::Live)
            s = SocketState::PeerClosed;
    }
    return s;
}

// The latest record per inode (an inode number can be reused once freed).
std::map<uint64_t, const SocketRecord*> records_by_inode(const std::vector<SocketRecord>& records)
{
    std::map<uint64_t, const SocketRecord*> out;
    for (const SocketRecord& r : records) {
        const SocketRecord*& slot = out[r.inode];
        if (!slot || slot->connect_ns < r.connect_ns)
            slot = &r;
    }
    return out;
}

}  // namespace

const char* socket_state_name(SocketState s)
{
    switch (s) {
    case SocketState::Live:
        return "open";
    case SocketState::PeerClosed:
        return "peer_closed";
    case SocketState::Closed:
        break;
    }
    return "closed";
}

const SharedText& socket_state_text(SocketState s)
{
    static const SharedText open(socket_state_name(SocketState::Live)),
            peer_closed(socket_state_name(SocketState::PeerClosed)), closed(socket_state_name(SocketState::Closed));
    switch (s) {
    case SocketState::Live:
        return open;
    case SocketState::PeerClosed:
        return peer_closed;
    case SocketState::Closed:
        break;
    }
    return closed;
}

const SharedText& no_socket_text()
{
    static const SharedText none("none");
    return none;
}

Peer Peer::inet4(const uint8_t* a4, uint16_t port)
{
    Peer p;
    p.kind_ = Kind::Inet;
    std::memcpy(&p.word_, a4, 4);
    p.port_ = port;
    return p;
}

Peer Peer::inet6(const uint8_t* a16, uint16_t port)
{
    if (std::memcmp(a16, kV4Mapped, sizeof(kV4Mapped)) == 0)
        return inet4(a16 + 12, port);
    Peer p;
    p.kind_ = Kind::Inet;
    p.v6_ = true;
    p.word_ = peer_names::intern_v6(a16);
    p.port_ = port;
    return p;
}

Peer Peer::unix_path(const char* sun_path, size_t len)
{
    std::string path;
    if (len > 0 && sun_path[0] == '\0') {  // abstract: the name is every byte
        path = "@" + std::string(sun_path + 1, len - 1);
        while (!path.empty() && path.back() == '\0')
            path.pop_back();
    } else {
        path.assign(sun_path, strnlen(sun_path, len));
    }
    return unix_name(path);
}

Peer Peer::unix_name(const std::string& name)
{
    Peer p;
    p.kind_ = Kind::Unix;
    p.word_ = peer_names::intern_path(name);
    return p;
}

void Peer::hold() const
{
    if (named())
        peer_names::hold(word_);
}

void Peer::drop()
{
    if (named())
        peer_names::drop(word_);
}

std::array<uint8_t, 16> Peer::addr() const
{
    std::array<uint8_t, 16> a{};
    if (kind_ == Kind::Inet && v6_)
        return peer_names::v6_of(word_);
    if (kind_ == Kind::Inet)
        std::memcpy(a.data(), &word_, 4);
    return a;
}

const std::string& Peer::path() const
{
    static const std::string none;
    return kind_ == Kind::Unix ? peer_names::path_of(word_) : none;
}

std::string Peer::str() const
{
    char buf[INET6_ADDRSTRLEN];
    switch (kind_) {
    case Kind::None:
        return "";
    case Kind::Unix: {
        // Paths are any bytes: keep reports plain text and valid UTF-8.
        std::string out;
        for (unsigned char c : path()) {
            if (c >= 0x20 && c < 0x7f && c != '\\') {
                out += static_cast<char>(c);
            } else {
                char esc[5];
                std::snprintf(esc, sizeof(esc), "\\x%02x", c);
                out += esc;
            }
        }
        return out;
    }
    case Kind::Inet:
        break;
    }
    if (!v6_) {
        // By hand, inet_ntop's text: the model prints each handle's local
        // address this way every report (ConnSocket::local).
        char* p = buf;
        auto decimal = [&p](unsigned v) {
            char d[5];
            int n = 0;
            do
                d[n++] = static_cast<char>('0' + v % 10);
            while ((v /= 10) != 0);
            while (n)
                *p++ = d[--n];
        };
        const auto* b = reinterpret_cast<const uint8_t*>(&word_);
        for (int i = 0; i < 4; i++) {
            if (i)
                *p++ = '.';
            decimal(b[i]);
        }
        *p++ = ':';
        decimal(port_);
        return std::string(buf, p);
    }
    inet_ntop(AF_INET6, peer_names::v6_of(word_).data(), buf, sizeof(buf));
    return "[" + std::string(buf) + "]:" + std::to_string(port_);
}

bool Peer::operator<(const Peer& o) const
{
    if (kind_ != o.kind_)
        return kind_ < o.kind_;
    if (v6_ != o.v6_)
        return v6_ < o.v6_;
    if (kind_ == Kind::Inet && word_ != o.word_) {  // the address bytes in order
        if (!v6_)
            return std::memcmp(&word_, &o.word_, 4) < 0;
        if (int c = std::memcmp(peer_names::v6_of(word_).data(), peer_names::v6_of(o.word_).data(), 16))
            return c < 0;
    }
    if (port_ != o.port_)
        return port_ < o.port_;
    return kind_ == Kind::Unix && word_ != o.word_ && path() < o.path();
}

std::optional<Peer> parse_db_host(const std::string& text)
{
    std::string host = text, port;
    if (!text.empty() && text[0] == '[') {  // [v6]:port or [v6]
        size_t close = text.find(']');
        if (close == std::string::npos)
            return std::nullopt;
        host = text.substr(1, close - 1);
        std::string rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':' || rest.size() == 1)
                return std::nullopt;
            port = rest.substr(1);
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {  // v4:port
        size_t colon = text.find(':');
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
        if (port.empty())
            return std::nullopt;
    }
    unsigned long p = 0;
    if (!port.empty()) {
        if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5)
            return std::nullopt;
        p = std::stoul(port);
        if (p == 0 || p > 65535)
            return std::nullopt;
    }
    uint8_t a[16];
    if (inet_pton(AF_INET, host.c_str(), a) == 1)
        return Peer::inet4(a, static_cast<uint16_t>(p));
    if (inet_pton(AF_INET6, host.c_str(), a) == 1)
        return Peer::inet6(a, static_cast<uint16_t>(p));
    return std::nullopt;
}

bool is_pg_socket_path(const std::string& path)
{
    static const std::string prefix = ".s.PGSQL.";
    size_t slash = path.rfind('/');
    std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.compare(0, prefix.size(), prefix) != 0 || base.size() == prefix.size())
        return false;
    return base.find_first_not_of("0123456789", prefix.size()) == std::string::npos;
}

bool DbServers::matches(const Peer& p) const
{
    if (p.kind() == Peer::Kind::Unix)
        return is_pg_socket_path(p.path()) || contains(paths, p.path());
    if (p.kind() != Peer::Kind::Inet)
        return false;
    if (std::find(ports.begin(), ports.end(), p.port()) != ports.end() || learned.count(p))
        return true;
    for (const Peer& h : hosts)
        if (h.v6() == p.v6() && h.addr() == p.addr() && (h.port() == 0 || h.port() == p.port()))
            return true;
    return false;
}

size_t learn_servers(const std::vector<SocketRecord>& records, DbServers& servers)
{
    size_t added = 0;
    for (const SocketRecord& r : records)
        if (r.conn && r.tcp() && r.established_ns && r.peer.kind() == Peer::Kind::Inet)
            added += servers.learned.insert(r.peer).second;
    return added;
}

ProcessSocketReport build_socket_report(const ProcessScan& scan, const std::vector<SocketRecord>& records,
                                        const std::vector<HandleRef>& handles, const DbServers& rules,
                                        ProcessSocketMemory& mem)
{
    ProcessSocketReport rep;
    rep.tracked = true;

    std::map<uint64_t, const HeldSocket*> held;
    for (const HeldSocket& h : scan.sockets)
        held[h.inode] = &h;
    const auto by_inode = records_by_inode(records);
    std::multimap<uint64_t, const SocketRecord*> by_conn;
    for (const SocketRecord& r : records)
        if (r.conn)
            by_conn.emplace(r.conn, &r);

    // Each handle's socket: the last one its PQconnectPoll calls connected
    // since the handle's connect began (earlier ones: addresses tried
    // before, or the socket a PQreset replaced).
    std::map<uint64_t, uint64_t> paired_inode;  // inode -> conn, for live handle sockets
    TextPool peers;  // the handles of a process mostly reach one server: one copy of its text
    if (!handles.empty())
        rep.conns.reserve(handles.size());  // kept between reports: made at its size
    for (const HandleRef& h : handles) {
        const SocketRecord* cur = nullptr;
        auto [lo, hi] = by_conn.equal_range(h.conn);
        for (auto it = lo; it != hi; ++it) {
            const SocketRecord* r = it->second;
            if (r->connect_ns >= h.start_ns && server_candidate(*r, rules) && (!cur || r->connect_ns > cur->connect_ns))
                cur = r;
        }
        ConnSocket cs;
        cs.state = no_socket_text();
        if (cur) {
            SocketState s = record_state(*cur, scan, held);
            cs.peer = peers.get(cur->peer.str());
            cs.state = socket_state_text(s);
            cs.inode = cur->inode;
            if (cur->local.port())  // the kernel's, at the handshake
                cs.local = cur->local;
            else if (auto it = held.find(cur->inode); it != held.end() && it->second->local.port())
                cs.local = it->second->local;
            cs.last_io_ns = cur->last_io_ns;
            cs.use_ns = cur->use_ns;
            cs.use_tid = cur->use_tid;
            cs.use_stack = cur->use_stack;
            if (s != SocketState::Closed || cur->established_ns)
                mem.learned.insert(cur->peer);  // a server this process's libpq reached
            if (s == SocketState::Live)
                paired_inode[cur->inode] = h.conn;
        }
        if (cs.state != "open")
            rep.handles_without_socket++;
        rep.conns[h.conn] = std::move(cs);
    }

    // Every live socket the process holds, plus those connected after the
    // scan began (known from their records only).
    struct Candidate {
        uint64_t inode;
        Peer peer;
        const SocketRecord* rec;
    };
    std::vector<Candidate> live;
    for (const HeldSocket& h : scan.sockets) {
        if (h.state != SocketState::Live)
            continue;
        auto it = by_inode.find(h.inode);
        const SocketRecord* rec = it != by_inode.end() ? it->second : nullptr;
        if (rec && record_state(*rec, scan, held) != SocketState::Live)
            continue;  // closed since the scan
        live.push_back({h.inode, rec ? rec->peer : h.peer, rec});
    }
    for (const auto& [inode, rec] : by_inode)
        if (!held.count(inode) && (!scan.ok || rec->connect_ns >= scan.time_ns) &&
            record_state(*rec, scan, held) == SocketState::Live)
            live.push_back({inode, rec->peer, rec});

    for (const Candidate& c : live) {
        const bool paired = paired_inode.count(c.inode) != 0;
        if (!paired && !rules.matches(c.peer) && !mem.learned.count(c.peer))
            continue;  // not a database socket
        rep.db_sockets++;
        if (paired)
            rep.paired++;
        else if (c.rec && c.rec->conn)
            rep.connecting++;
        else if (!c.rec && mem.pre_attach.count(c.inode)) {
            rep.pre_attach++;
            rep.pre_attach_peers[c.peer.str()]++;
        } else {
            rep.untracked++;
            rep.untracked_peers[c.peer.str()]++;
        }
    }

    if (scan.ok) {
        for (auto it = mem.pre_attach.begin(); it != mem.pre_attach.end();)
            it = held.count(*it) ? std::next(it) : mem.pre_attach.erase(it);
        mem.last_scan = scan;
    }
    return rep;
}

bool exit_walk_pending(bool walked, uint64_t exited_ns, uint64_t now_ns)
{
    return !walked && now_ns < exited_ns + kExitWalkWaitNs;
}

ProcessSocketReport build_exit_report(uint64_t exited_ns, const std::vector<SocketRecord>& records,
                                      const DbServers& rules, const ProcessSocketMemory& mem,
                                      const std::set<uint64_t>* held_at_exit)
{
    ProcessSocketReport rep;
    rep.tracked = true;
    const ProcessScan& scan = mem.last_scan;
    const auto by_inode = records_by_inode(records);

    auto is_db = [&](const Peer& peer, const SocketRecord* rec) {
        return rules.matches(peer) || mem.learned.count(peer) || (rec && rec->conn && server_candidate(*rec, rules));
    };
    // Held at exit: TCP sockets the hooks did not see closed before the
    // exit; Unix sockets held at the last scan or connected after it.
    auto still_open = [&](const SocketRecord& r) {
        if (r.tcp())
            return (!r.closed_ns || r.closed_ns >= exited_ns) && (!r.peer_closed_ns || r.peer_closed_ns >= exited_ns);
        return true;
    };
    if (held_at_exit) {  // exact: what its fd table held
        std::map<uint64_t, const HeldSocket*> scanned;
        if (scan.ok)
            for (const HeldSocket& h : scan.sockets)
                scanned[h.inode] = &h;
        for (uint64_t inode : *held_at_exit) {
            auto r = by_inode.find(inode);
            const SocketRecord* rec = r != by_inode.end() ? r->second : nullptr;
            auto s = scanned.find(inode);
            const HeldSocket* h = s != scanned.end() ? s->second : nullptr;
            if (rec && rec->tcp() &&
                ((rec->closed_ns && rec->closed_ns < exited_ns) ||
                 (rec->peer_closed_ns && rec->peer_closed_ns < exited_ns)))
                continue;  // not live any more
            if (!rec && (!h || h->state != SocketState::Live))
                continue;  // unknown, or not live at the last scan
            if (is_db(rec ? rec->peer : h->peer, rec))
                rep.closed_at_exit++;
        }
        return rep;
    }
    std::set<uint64_t> counted;
    if (scan.ok)
        for (const HeldSocket& h : scan.sockets) {
            if (h.state != SocketState::Live)
                continue;
            auto it = by_inode.find(h.inode);
            const SocketRecord* rec = it != by_inode.end() ? it->second : nullptr;
            if (rec && !still_open(*rec))
                continue;
            if (is_db(rec ? rec->peer : h.peer, rec) && counted.insert(h.inode).second)
                rep.closed_at_exit++;
        }
    for (const auto& [inode, rec] : by_inode)
        if ((!scan.ok || rec->connect_ns >= scan.time_ns) && rec->connect_ns < exited_ns && still_open(*rec) &&
            is_db(rec->peer, rec) && counted.insert(inode).second)
            rep.closed_at_exit++;
    return rep;
}

ConnSocket socket_of(const ProcessSocketReport& r, uint64_t conn)
{
    auto it = r.conns.find(conn);
    return it != r.conns.end() ? it->second : ConnSocket{};
}

}  // namespace connleak
