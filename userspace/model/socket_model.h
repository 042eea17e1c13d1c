// Socket truth, the pure part: which sockets of a process lead to a
// database server, and how they pair with libpq's live handles.
//
// Inputs are what the kernel recorded at connect() (SocketRecord: owner
// thread, the PGconn whose PQconnectPoll was running, peer) and what a scan
// of /proc found the process holding (HeldSocket). No kernel, no files here.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "peer_names.h"
#include "shared_map.h"
#include "shared_text.h"

namespace connleak {

// Where a socket leads: a TCP endpoint or a Unix socket path.
// 8 bytes: an IPv4 address is held in place, an IPv6 address or a Unix
// path as the id of its one counted copy (peer_names.h). A Peer is held
// four times per socket (a record's two, the last fd read's two: 100,000s
// at scale); with the 16-byte address and a shared path in place it was 32.
class Peer {
public:
    enum class Kind : uint8_t { None, Inet, Unix };

    Peer() = default;
    Peer(const Peer& o) noexcept : kind_(o.kind_), v6_(o.v6_), port_(o.port_), word_(o.word_) { hold(); }
    Peer(Peer&& o) noexcept : kind_(o.kind_), v6_(o.v6_), port_(o.port_), word_(o.word_) { o.forget(); }
    Peer& operator=(const Peer& o) noexcept
    {
        if (this != &o) {
            o.hold();
            drop();
            kind_ = o.kind_, v6_ = o.v6_, port_ = o.port_, word_ = o.word_;
        }
        return *this;
    }
    Peer& operator=(Peer&& o) noexcept
    {
        if (this != &o) {
            drop();
            kind_ = o.kind_, v6_ = o.v6_, port_ = o.port_, word_ = o.word_;
            o.forget();
        }
        return *this;
    }
    ~Peer() { drop(); }

    static Peer inet4(const uint8_t* a4, uint16_t port);
    // IPv4-mapped addresses are made IPv4.
    static Peer inet6(const uint8_t* a16, uint16_t port);
    // A sun_path as the kernel holds it (len bytes; abstract names start with NUL).
    static Peer unix_path(const char* sun_path, size_t len);
    // A Unix peer by its name as shown (abstract names start with '@').
    static Peer unix_name(const std::string& name);

    Kind kind() const { return kind_; }
    bool v6() const { return v6_; }          // Inet: IPv6
    uint16_t port() const { return port_; }  // Inet
    // Inet: the address, IPv4 in the first 4 bytes; zeros for the others.
    std::array<uint8_t, 16> addr() const;
    // Unix: the name (abstract names start with '@'); "" for the others.
    const std::string& path() const;

    // "127.0.0.1:5432", "[::1]:5432", "/run/postgresql/.s.PGSQL.5432", or "".
    std::string str() const;
    // By kind, then IPv6 or not, address, port, path (as when they were fields).
    bool operator<(const Peer& o) const;
    // One id per distinct name held: equal peers have equal bytes.
    bool operator==(const Peer& o) const
    {
        return kind_ == o.kind_ && v6_ == o.v6_ && port_ == o.port_ && word_ == o.word_;
    }
    bool operator!=(const Peer& o) const { return !(*this == o); }

private:
    bool named() const { return kind_ == Kind::Unix || (kind_ == Kind::Inet && v6_); }
    void hold() const;
    void drop();
    void forget() { kind_ = Kind::None, v6_ = false, port_ = 0, word_ = 0; }

    Kind kind_ = Kind::None;
    bool v6_ = false;
    uint16_t port_ = 0;
    uint32_t word_ = 0;  // IPv4: its 4 bytes as in memory; IPv6, Unix: its id in peer_names
};

// --db-host: "ADDR", "ADDR:PORT", "[V6ADDR]:PORT" (port 0: any port).
std::optional<Peer> parse_db_host(const std::string& text);

// True for PostgreSQL's socket name: a last component ".s.PGSQL.<digits>".
bool is_pg_socket_path(const std::string& path);

// Servers known to be databases: named by the options, or learned.
struct DbServers {
    std::vector<uint16_t> ports;     // any address on these ports
    std::vector<Peer> hosts;         // port 0: any port of that address
    std::vector<std::string> paths;  // Unix socket paths (besides .s.PGSQL.<port>)
    std::set<Peer> learned;          // servers some traced libpq reached, or found serving PostgreSQL

    bool matches(const Peer& p) const;
};

// A connect() the kernel saw in a traced process (sockets.bpf.c's sock_rec).
// 104 bytes a record (one per socket at scale): without the connecting
// thread (nothing read it; sock_rec still has it), TCP told by the peer's
// kind, the traffic flag in the top bit of the last use's thread id (a Linux
// thread id is at most 2^22, PID_MAX_LIMIT). Was 112 (160 with 32-byte peers).
struct SocketRecord {
    SocketRecord() : use_tid(0), traffic(false) {}  // (no default member initializers for bit-fields before C++20)

    uint64_t sk = 0;  // the record's key
    uint32_t tgid = 0;
    uint32_t use_tid : 31;  // the thread of the send that began its latest unit of work
    // Traffic (libpq's sockets, when the send/recv hooks run): whether a
    // byte was sent or received; last_io_ns is the connect when none yet.
    bool traffic : 1;
    uint64_t conn = 0;  // PGconn whose PQconnectPoll ran the connect, 0 outside libpq
    uint64_t inode = 0;
    uint64_t connect_ns = 0, established_ns = 0, peer_closed_ns = 0, closed_ns = 0;
    Peer peer;   // Inet for TCP (IPv4 or IPv6), Unix for a Unix stream socket
    Peer local;  // TCP: our own address:port once established; kind None before and for Unix
    // The last byte sent or received (the connect when none yet), and the
    // send that began its latest unit of work (0: none).
    uint64_t last_io_ns = 0;
    uint64_t use_ns = 0;
    uint64_t use_stack = 0;  // the kernel's id of that send's stack (RawState::use_stacks); 0: sent as a copy

    // Else a Unix stream socket (no close times: scans tell). A record's
    // family is TCP's unless AF_UNIX (to_record), as its peer's kind is.
    bool tcp() const { return peer.kind() != Peer::Kind::Unix; }
};

// Learns into servers.learned the server of every TCP socket a libpq handle
// connected (a record with a PGconn) that completed its handshake, in any
// traced process, the handle live or finished since: a socket to the same
// server, held since before the attach or inherited, is then a database's.
// Returns how many servers were new.
size_t learn_servers(const std::vector<SocketRecord>& records, DbServers& servers);

enum class SocketState : uint8_t {
    Live,        // connected or connecting
    PeerClosed,  // the server closed its end (TCP CLOSE_WAIT, Unix peer shutdown); still held
    Closed,      // gone from the process, or closing on our side
};

// How a socket's state reads in reports: "open", "peer_closed" or "closed".
const char* socket_state_name(SocketState s);
// The same, one shared copy each (ConnSocket::state); "none": no socket seen.
const SharedText& socket_state_text(SocketState s);
const SharedText& no_socket_text();

// A socket the process holds (in its fd table), as a scan found it.
// Kept per socket between reports (the last fd read, 100,000 at scale):
// 24 bytes, the state in the inode's top byte (a socket's inode number is
// 32 bits: the kernel's get_next_ino()). Was 32 (the state padded to 4
// beside the peers), 80 with 32-byte peers.
struct HeldSocket {
    HeldSocket() : inode(0), state(SocketState::Live) {}  // (no default member initializers for bit-fields before C++20)
    HeldSocket(uint64_t inode_, Peer peer_, SocketState state_, Peer local_)
        : inode(inode_), state(state_), peer(std::move(peer_)), local(std::move(local_))
    {
    }

    uint64_t inode : 56;
    SocketState state : 8;
    Peer peer;   // kind None when unknown (e.g. a Unix peer without a name)
    Peer local;  // TCP: the process's own address:port; kind None for Unix sockets
};

struct ProcessScan {
    bool ok = false;       // false: the process could not be read (e.g. it is exiting)
    uint64_t time_ns = 0;  // CLOCK_MONOTONIC when the scan began
    std::vector<HeldSocket> sockets;
};

// A live libpq handle (connleak.bpf.c's conns entry).
struct HandleRef {
    uint64_t conn = 0;
    uint32_t tid = 0;
    uint64_t start_ns = 0;  // entry of its outermost connect call
};

// What is remembered of a process between intervals.
struct ProcessSocketMemory {
    std::set<uint64_t> pre_attach;  // inodes held when connleak attached (pruned as they close)
    std::set<Peer> learned;         // servers this process's libpq reached
    ProcessScan last_scan;          // for the accounting at exit
    bool frozen = false;            // exited: final report kept
};

// Socket of one live handle, for its entry in "connections".
// Kept between reports, one per live handle (100,000 at scale): the peer
// and the state are shared texts (one copy per server and per state), the
// local address a Peer (8 bytes; a string was 32): 64 bytes, was 88.
struct ConnSocket {
    SharedText peer;          // "" when no socket was seen
    SharedText state;         // "open", "peer_closed", "closed", or "none" (socket_state_text)
    Peer local;               // TCP: the client's address:port (record or scan); else kind None
    uint64_t inode = 0;       // the socket's inode; 0 when no socket was seen
    uint64_t last_io_ns = 0;  // its last traffic (or connect), 0: not known
    uint64_t use_ns = 0;      // the send that began its latest unit of work, 0: none seen
    uint32_t use_tid = 0;     // its thread
    uint64_t use_stack = 0;   // its stack's kernel id (RawState::use_stacks); 0: its stack came as a copy (RawConn)
};

struct ProcessSocketReport {
    bool tracked = false;     // socket tracking ran for this process
    uint64_t db_sockets = 0;  // live sockets to a database server = paired + pre_attach + untracked + connecting
    uint64_t paired = 0;      // the socket of a live handle
    uint64_t pre_attach = 0;  // held since before connleak attached
    uint64_t untracked = 0;   // opened outside libpq (another driver), or inherited
    uint64_t connecting = 0;  // libpq's, handle not live (yet): a connect or a ping under way
    uint64_t handles_without_socket = 0;  // live handles whose socket is not open
    uint64_t closed_at_exit = 0;          // database sockets the kernel closed when the process exited
    uint64_t dropped = 0;                 // socket records the kernel map had no room for
    int64_t tracking_discrepancy = 0;     // db_sockets - active (set by the model)
    std::map<std::string, uint64_t> pre_attach_peers, untracked_peers;  // peer -> sockets
    // By PGconn; shared by the copies of a report (the tracer hands a kept
    // report out each interval).
    SharedMap<uint64_t, ConnSocket> conns;
    // What tells the handle state reads (model/handle_refresh) what changed:
    // the send/recv hooks filled the conns' last_io_ns; the process's latest
    // PQconnectPoll entry (0: none seen, or not probed).
    bool traffic = false;
    uint64_t last_poll_ns = 0;
};

// The report of a running process. records: this process's (tgid == pid).
// Learns into mem (servers reached, pre-attach sockets still held).
ProcessSocketReport build_socket_report(const ProcessScan& scan, const std::vector<SocketRecord>& records,
                                        const std::vector<HandleRef>& handles, const DbServers& rules,
                                        ProcessSocketMemory& mem);

// The kernel marks a process's exit (connleak.bpf.c) and walks its fd table
// for the sockets it still holds (sockets.bpf.c) in two programs of the same
// tracepoint: a report can fall between them. Its final socket report then
// waits for the walk, at most kExitWalkWaitNs after the exit (a walk that
// never comes: the report is made without the held sockets, as before).
constexpr uint64_t kExitWalkWaitNs = 1000000000ULL;
bool exit_walk_pending(bool walked, uint64_t exited_ns, uint64_t now_ns);

// The final report of a process that exited at exited_ns: every live
// database socket it held then was closed by the kernel (closed_at_exit).
// held_at_exit: the socket inodes in its fd table at exit (read by the
// kernel), or null when unknown: then the last scan, and the records for
// what happened after it, tell.
ProcessSocketReport build_exit_report(uint64_t exited_ns, const std::vector<SocketRecord>& records,
                                      const DbServers& rules, const ProcessSocketMemory& mem,
                                      const std::set<uint64_t>* held_at_exit);

// The socket of a live handle in r ({"", ""} when sockets are not tracked).
ConnSocket socket_of(const ProcessSocketReport& r, uint64_t conn);

}  // namespace connleak
