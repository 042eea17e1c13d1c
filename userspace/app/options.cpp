#include "options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sys/un.h>

#include "connleak.h"
#include "socket_model.h"

namespace connleak {
namespace {

[[noreturn]] void usage_error(const std::string& msg)
{
    std::fprintf(stderr, "connleak: %s (see connleak --help)\n", msg.c_str());
    std::exit(2);
}

// Upper bounds of the kernel maps (--max-*). The hash maps are preallocated
// when loaded: each entry costs its bytes whether used or not (measured as
// the map's memlock in /proc/PID/fdinfo over max_entries, README "Limits"),
// and start-up time grows with them.
struct MapBound {
    const char* option;
    uint32_t limit;
    uint32_t bytes_per_entry;
};
constexpr MapBound kMapBounds[] = {
    {"--max-conns", 1u << 20, 112},  // 16 x the default: 112 MiB
    {"--max-sites", 1u << 18, 200},  // 32 x: 50 MiB
    {"--max-procs", 1u << 16, 176},  // 64 x: 11 MiB
};

// PIDs are below the kernel's pid_max; a larger -p (4294967295 would
// become pid -1: every process) is never a process.
uint32_t pid_max()
{
    std::ifstream f("/proc/sys/kernel/pid_max");
    uint32_t max = 0;
    if (f >> max && max > 0)
        return max;
    return 4194304;  // PID_MAX_LIMIT on 64-bit: no pid_max is larger
}

}  // namespace

Options parse_options(int argc, char** argv)
{
    Options o;
    // Everything after the first "--" is the command to launch, untouched by
    // option parsing (its own flags must not be read as ours).
    int split = argc;
    for (int i = 1; i < argc; i++)
        if (std::strcmp(argv[i], "--") == 0) {
            split = i;
            break;
        }
    for (int i = split + 1; i < argc; i++)
        o.command.emplace_back(argv[i]);

    CLI::App app{"connleak: find database connection leaks in running processes (libpq, eBPF)\n\n"
                 "  connleak [OPTIONS] -p PID [-p PID ...]     attach to running processes\n"
                 "  connleak [OPTIONS] -- COMMAND [ARGS ...]   launch COMMAND, traced from its first instruction",
                 "connleak"};
    app.add_option("-p,--pid", o.pids, "Attach to this running process (repeatable)");
    app.add_option("-i,--interval", o.interval_s, "Report every SEC seconds")->default_val(2);
    app.add_option("-d,--duration", o.duration_s, "Stop after SEC seconds (default: Ctrl-C, or when every target exits)");
    app.add_option("-j,--json", o.json_path, "Write the JSON snapshot to FILE each interval and at exit (atomically); - for JSON Lines on stdout");
    app.add_option("--leak-after", o.leak_after_s, "A live connection this many seconds old is a leak (0: every live one)")
        ->default_val(kDefaultLeakAfterS);
    app.add_option("--libpq", o.libpq_path, "Probe this libpq instead of the one the target maps");
    app.add_option("--top", o.top_sites, "Sites listed per process")->default_val(10);
    app.add_flag("!--no-follow", o.follow_children, "Do not trace children forked by traced processes");
    app.add_flag("-q,--quiet", o.quiet, "No text report (use with --json)");
    app.add_flag("--no-color", o.no_color, "No colours in the live view (also when NO_COLOR is set)");
    app.add_flag("--verbose", o.verbose, "libbpf's own log on stderr, e.g. the verifier's (also CONNLEAK_VERBOSE=1)");
    app.add_option("--max-conns", o.max_conns, "Live handles the kernel map holds (default " + std::to_string(CONNLEAK_MAX_CONNS) + ")");
    app.add_option("--max-sites", o.max_sites, "Sites the kernel map holds (default " + std::to_string(CONNLEAK_MAX_SITES) + ")");
    app.add_option("--max-procs", o.max_procs, "Processes the kernel map holds (default " + std::to_string(CONNLEAK_MAX_PROCS) + ")");
    app.add_option("--stack-size", o.stack_size,
                   "Bytes of user stack copied per acquisition, unwound with DWARF CFI (0: no stacks)")
        ->default_val(CONNLEAK_STACK_SIZE)->check(CLI::Range(0, CONNLEAK_STACK_SIZE_MAX));
    app.add_option("--stacks", o.stack_frames, "Frames shown per stack in the text report and leak notices")
        ->default_val(10);
    app.add_flag("--notice-stacks", o.notice_stacks,
                 "Each leak notice on its own line with its whole stack (default: a site's stack once, "
                 "repeats folded)");
    app.add_option("--site-skip", o.site_skip,
                   "A frame matching this regex (\"func+0x1c (module) file.c:3\") is not the site: driver glue "
                   "(repeatable; libpq and libpqxx are always skipped)");
    app.add_option("--debug-dir", o.debug_dir, "Where separate debug files live (.build-id/, debuglink)")
        ->default_val("/usr/lib/debug");
    app.add_option("--db-port", o.db_ports,
                   "A database server's TCP port, besides those libpq reaches (repeatable; default 5432)");
    app.add_option("--db-host", o.db_hosts, "A database server: ADDR, ADDR:PORT or [ADDR]:PORT (repeatable)");
    app.add_option("--db-socket", o.db_socket_paths,
                   "A database server's Unix socket path, besides .s.PGSQL.<port> (repeatable)");
    app.add_flag("!--no-sockets", o.sockets,
                 "Do not hold handles against the database sockets (no db_sockets, peer, tracking_discrepancy)");
    app.footer("Exit status: 0 done (with COMMAND: its exit status), 1 runtime failure, 2 usage error.");

    try {
        app.parse(split, argv);
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        std::exit(0);
    } catch (const CLI::ParseError& e) {
        usage_error(e.what());
    }
    // Ranges checked here, not by CLI11's validators, whose messages print
    // DBL_MAX in full.
    if (!(o.interval_s > 0))
        usage_error("--interval must be a number of seconds above 0");
    if (!(o.duration_s >= 0))
        usage_error("--duration must be a number of seconds, 0 or more");
    if (!(o.leak_after_s >= 0))
        usage_error("--leak-after must be a number of seconds, 0 or more");
    if (o.top_sites == 0)
        usage_error("--top must be 1 or more");
    if (app.count("--json") && o.json_path.empty())
        usage_error("--json needs a file name (or - for JSON Lines on stdout)");
    for (const MapBound& b : kMapBounds) {
        if (!app.count(b.option))
            continue;
        const uint32_t n = app.get_option(b.option)->as<uint32_t>();
        if (n == 0)
            usage_error(std::string(b.option) + " must be 1 or more");
        if (n > b.limit)
            usage_error(std::string(b.option) + " must be at most " + std::to_string(b.limit) + " (each entry takes " +
                        std::to_string(b.bytes_per_entry) + " bytes of kernel memory, " +
                        std::to_string(uint64_t{b.limit} * b.bytes_per_entry >> 20) + " MiB at most)");
    }
    if (o.pids.empty() && o.command.empty())
        usage_error("nothing to trace: give -p PID or -- COMMAND");
    if (!o.pids.empty() && !o.command.empty())
        usage_error("give -p PID or -- COMMAND, not both");
    const uint32_t max_pid = pid_max();
    for (uint32_t pid : o.pids)
        if (pid == 0 || pid >= max_pid)
            usage_error("-p " + std::to_string(pid) + " is not a process id (1 to " + std::to_string(max_pid - 1) +
                        ", below the kernel's pid_max)");
    for (const std::string& re : o.site_skip)
        try {
            std::regex check(re);
        } catch (const std::regex_error& e) {
            usage_error("--site-skip " + re + ": " + e.what());
        }
    for (uint16_t port : o.db_ports)
        if (port == 0)
            usage_error("--db-port must be a TCP port, 1 to 65535");
    for (const std::string& h : o.db_hosts) {
        auto peer = parse_db_host(h);
        if (!peer)
            usage_error("--db-host " + h + ": not ADDR, ADDR:PORT or [ADDR]:PORT");
        o.db_host_peers.push_back(*peer);
    }
    for (const std::string& path : o.db_socket_paths)
        if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
            usage_error("--db-socket " + path + ": not a Unix socket path");
    return o;
}

}  // namespace connleak
