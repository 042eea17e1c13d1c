// The command line (see README "Usage"): parsed once into plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "connleak.h"
#include "defaults.h"
#include "help_text.h"
#include "http_server.h"
#include "socket_model.h"

namespace connleak {

struct Options {
    std::vector<uint32_t> pids;        // -p, repeatable (each with its descendants unless --no-follow)
    bool all = false;                  // --all: every process on the host that maps a libpq, now and later
    std::vector<std::string> command;  // after --
    double interval_s = 2;
    double duration_s = 0;  // 0: until Ctrl-C or every target exited
    std::string json_path;  // "" none, "-" JSON Lines on stdout
    double leak_after_s = kDefaultLeakAfterS;
    std::string libpq_path;  // "" : the one the target maps
    size_t top_sites = 10;
    size_t connections_shown = kDefaultConnectionsShown;           // live handles the JSON lists per process
    size_t connections_listed_max = kDefaultConnectionsListedMax;  // ... and in all
    bool follow_children = true;
    bool quiet = false;                                    // no text report (JSON only)
    bool no_color = false;                                 // --no-color (NO_COLOR is honoured too)
    bool verbose = false;                                  // libbpf's own log on stderr
    uint32_t max_conns = 0, max_sites = 0, max_procs = 0;  // 0: defaults of connleak.h
    uint32_t stack_size = CONNLEAK_STACK_SIZE;             // user stack bytes copied per acquisition; 0: no stacks
    size_t stack_frames = 10;                              // frames shown per stack (text, notices)
    bool notice_stacks = false;                            // every leak notice with its whole stack, none folded
    std::vector<std::string> site_skip;                    // frames that are not the site, besides libpq's
    std::vector<std::string> pool_frames;                  // frames of a pool's code, besides the known pools
    std::string debug_dir = "/usr/lib/debug";
    bool sockets = true;                       // db sockets held against handles
    std::vector<uint16_t> db_ports;            // --db-port (empty: 5432)
    std::vector<std::string> db_hosts;         // --db-host ADDR[:PORT]
    std::vector<Peer> db_host_peers;           // db_hosts, parsed (once, here)
    std::vector<std::string> db_socket_paths;  // --db-socket PATH
    double kill_after_s = 5;                   // SIGTERM to SIGKILL of a launched command connleak stops
    bool keep_command = false;                 // leave a launched command running when connleak ends first
    std::string http;                          // --http [ADDR:]PORT ("": no server)
    HttpAddress http_address;                  // http, parsed
    std::vector<std::string> servers;          // --server DSN: read pg_stat_activity there (repeatable)
    std::vector<std::string> server_labels;    // "host:port" of each, for messages (never the DSN)
    bool server_queries = true;                // --server-queries on|off
    std::string server_queries_text = "on";    // as given
};

// Parses argv. On --help prints usage and exits 0; on a usage error prints
// one line and exits 2.
Options parse_options(int argc, char** argv);

// Every option with its value name and description, for the man page.
std::vector<OptionHelp> option_help();

}  // namespace connleak
