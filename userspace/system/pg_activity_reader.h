// Server truth, the live part (--server): connleak's own libpq connection to
// each server, which reads pg_stat_activity once per interval (one query)
// on a worker thread. The tracing thread only takes the latest read, so an
// unreachable or slow server never stalls tracing or the report: every
// connect and query has a deadline, and stopping interrupts them at once.
//
// Failures are never fatal and never silent: each change (cannot connect,
// connection lost, reconnected, a role that cannot see other users'
// sessions) is one message, once, to be printed by the caller. The password
// (in the DSN, PGPASSWORD or the password file) is never kept by connleak
// beyond handing the DSN to libpq, and is cut out of every message.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "result.h"
#include "server_join.h"

namespace connleak {

// What people call a server of a DSN: "host:port" (a socket directory for
// host when it is one), never the password. An error when libpq cannot
// parse the DSN (its message, without the DSN).
Result<std::string> server_label(const std::string& dsn);

struct ActivityReaderOptions {
    std::vector<std::string> dsns;  // one per --server
    double interval_s = 2;
    double timeout_s = 5;     // connect, and each query (also the server's statement_timeout)
    size_t query_max = 1024;  // bytes of each query fetched
    bool queries = true;      // --server-queries off: not even fetched
};

class ActivityReader {
public:
    explicit ActivityReader(ActivityReaderOptions opts);
    ~ActivityReader();  // stops the worker: interrupts a connect or query under way
    ActivityReader(const ActivityReader&) = delete;
    ActivityReader& operator=(const ActivityReader&) = delete;

    // Starts the worker (first read at once). Call after any fork of a
    // launched command, so no child inherits connleak's own connections.
    void start();

    // The latest read of each server, in --server order; never blocks on a
    // server (a mutex held only to copy).
    std::vector<ServerRead> latest() const;

    // The processes whose sockets are to be joined (the traced ones still
    // running); their sockets are read on the worker too, after each round
    // of reads, so the tracing thread never scans /proc for --server.
    void set_pids(std::vector<uint32_t> pids);
    // The sockets of those processes, as the latest round found them.
    std::map<uint32_t, std::vector<HeldEndpoint>> latest_held() const;

    // Messages since the last call (each one line, without "connleak: ").
    std::vector<std::string> take_messages();

    // What the reads cost, for the benchmark (CONNLEAK_SERVER_STATS).
    struct Cost {
        uint64_t reads = 0;     // successful reads
        uint64_t rows = 0;      // sessions read, summed
        uint64_t query_ns = 0;  // the query, sent to its last row, summed
        uint64_t scan_ns = 0;   // the backends' fd tables (Unix-socket clients), summed
        uint64_t cpu_ns = 0;    // the worker thread's own CPU time
        uint64_t held_ns = 0;   // the traced processes' sockets, summed over rounds
        uint64_t rounds = 0;    // rounds of reads (every server, then the sockets)
    };
    Cost cost() const;

private:
    struct Server;
    void run();
    bool wait_stop(double seconds);  // true when asked to stop
    void say(const std::string& message);

    ActivityReaderOptions opts_;
    std::vector<std::unique_ptr<Server>> servers_;
    std::thread worker_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    int stop_fd_ = -1;  // eventfd: wakes a poll on a server's socket
    std::vector<ServerRead> latest_;
    std::vector<uint32_t> pids_;
    std::map<uint32_t, std::vector<HeldEndpoint>> held_;
    std::vector<std::string> messages_;
    Cost cost_;
};

}  // namespace connleak
