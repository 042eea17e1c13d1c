// Server truth, the pure part (--server): PostgreSQL's own view of each
// connection (pg_stat_activity) joined with the connections of the traced
// processes, and the connections made before the attach listed from it.
//
// Inputs are one read of pg_stat_activity per server and the sockets the
// traced processes hold; no libpq, no files here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "socket_model.h"

namespace connleak {

// One row of pg_stat_activity. A field the reading role may not see (another
// user's session without pg_read_all_stats) is absent.
struct ServerSession {
    uint32_t backend_pid = 0;
    std::optional<std::string> state, backend_start, xact_start, state_change, wait_event, query;
    Peer client;  // client_addr:client_port; kind None over a Unix socket or when hidden
    // Ages at the read (the server's clock), < 0 when unknown.
    double backend_age_ms = -1, xact_age_ms = -1, state_age_ms = -1;
};

// One read of one server.
struct ServerRead {
    std::string server;    // "host:port" as people name it, never the DSN
    bool ok = false;       // false: no read this interval (the reader says why, once)
    uint64_t read_ns = 0;  // CLOCK_MONOTONIC when the rows were read
    std::vector<ServerSession> sessions;
    // The server's backends on this host: their socket inodes (from their fd
    // tables), which a client's Unix socket names as its peer.
    std::map<uint64_t, uint32_t> backend_by_socket;
};

// A socket a traced process holds, as the join needs it.
struct HeldEndpoint {
    uint64_t inode = 0;
    Peer local, remote;            // TCP: both ends; Unix: remote is the path it reached
    uint64_t unix_peer_inode = 0;  // Unix: the server's end (sock_diag), 0 unknown
};

struct ServerJoinInput {
    bool enabled = false;     // --server given
    bool queries = true;      // --server-queries on
    size_t query_max = 1024;  // bytes of a query kept (cut at a UTF-8 boundary)
    uint64_t now_ns = 0;      // CLOCK_MONOTONIC of the snapshot
    std::vector<ServerRead> servers;
    std::map<uint32_t, std::vector<HeldEndpoint>> held;  // by pid: every socket it holds
    std::map<uint32_t, std::set<uint64_t>> pre_attach;   // by pid: inodes held when connleak attached
};

// What a connection's entry says of its server side.
struct ServerConn {
    std::string server;  // which --server
    uint32_t backend_pid = 0;
    std::optional<std::string> state, backend_start, xact_start, state_change, wait_event, query;
    double state_age_ms = -1;  // now, < 0 unknown
    // Pre-attach entries: what the socket says.
    std::string peer, socket;
};

// A server in the snapshot: whether this interval's read worked.
struct ServerSummary {
    std::string server;
    bool ok = false;
    uint64_t sessions = 0;  // client backends it listed
};

// The key to a connection's backend: the backend PID libpq holds for the
// handle (0 unknown), else its socket inode (0 none).
struct ConnServerKey {
    uint32_t backend_pid = 0;
    uint64_t inode = 0;
};

struct ServerMatch {
    const ServerRead* read = nullptr;
    const ServerSession* session = nullptr;
};

// Which backend a socket of this process is: a TCP socket by its local end
// against client_addr:client_port, a Unix one by its peer inode against the
// backends' fd tables. Indexed by inode.
std::map<uint64_t, ServerMatch> match_sockets(const std::vector<HeldEndpoint>& held,
                                              const std::vector<ServerRead>& servers);

// The entry of one joined connection; ages moved on to now_ns.
ServerConn server_conn(const ServerMatch& m, const ServerJoinInput& in);

// Ages: the server's at its read plus the time since.
double age_now_ms(double age_at_read_ms, uint64_t read_ns, uint64_t now_ns);

// True for 'idle in transaction' and 'idle in transaction (aborted)': a
// transaction left open, holding its locks and snapshot.
bool idle_in_transaction(const std::optional<std::string>& state);

// A query cut to at most max bytes, never inside a UTF-8 sequence.
std::string cut_query(const std::string& q, size_t max);

}  // namespace connleak
