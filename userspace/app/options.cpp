#include "options.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <regex>
#include <sys/un.h>

#include "connleak.h"
#include "help_text.h"
#include "libpq_api.h"
#include "pg_activity_reader.h"
#include "socket_model.h"

namespace connleak {
namespace {

[[noreturn]] void usage_error(const std::string& msg)
{
    std::fprintf(stderr, "connleak: %s (see connleak --help)\n", msg.c_str());
    std::exit(2);
}

// A usage error that already says what to do.
[[noreturn]] void usage_error_line(const std::string& msg)
{
    std::fprintf(stderr, "connleak: %s\n", msg.c_str());
    std::exit(2);
}

// What a value of each kind is, in words, for "'abc' is not ...".
std::string value_kind(const std::string& type_name)
{
    static const std::pair<const char*, const char*> kinds[] = {
        {"PID", "a process ID (a number)"}, {"SEC", "a number of seconds"},      {"N", "a whole number"},
        {"BYTES", "a number of bytes"},     {"PORT", "a TCP port (1 to 65535)"},
    };
    for (const auto& [name, kind] : kinds)
        if (type_name == name)
            return kind;
    return "a valid " + type_name;
}

// "-p/--pid" for the option CLI11 names "--pid" (or "-p"), as typed.
std::string spelled(const CLI::App& app, const std::string& name, const CLI::Option** found)
{
    std::string bare = name.substr(name.find_first_not_of('-') == std::string::npos ? 0 : name.find_first_not_of('-'));
    for (const CLI::Option* opt : app.get_options()) {
        if (!opt->check_name(name) && !opt->check_sname(bare) && !opt->check_lname(bare))
            continue;
        *found = opt;
        std::string out;
        for (const std::string& s : opt->get_snames())
            out += (out.empty() ? "-" : "/-") + s;
        for (const std::string& l : opt->get_lnames())
            out += (out.empty() ? "--" : "/--") + l;
        return out;
    }
    *found = nullptr;
    return name;
}

// CLI11's messages ("Could not convert: --pid = abc") said as connleak's
// own lines. The patterns are CLI11 2.1's (CLI/Error.hpp); anything else is
// passed on with the pointer to --help.
std::string parse_error_message(const CLI::ParseError& e, const CLI::App& app)
{
    const std::string what = e.what();
    std::smatch m;
    const CLI::Option* opt = nullptr;
    if (std::regex_match(what, m, std::regex(R"(Could not convert: (\S+) = (.*))"))) {
        std::string name = spelled(app, m[1], &opt);
        std::string value = m[2];
        if (!value.empty() && value.front() == '[' && value.back() == ']')
            value = value.substr(1, value.size() - 2);
        return name + ": '" + value + "' is not " + value_kind(opt ? opt->get_type_name() : "");
    }
    if (std::regex_match(what, m, std::regex(R"((\S+): \d+ required \S+ missing)")) ||
        std::regex_match(what, m, std::regex(R"(Expected (?:exactly|at least) \d+ arguments? to (\S+).*)"))) {
        std::string name = spelled(app, m[1], &opt);
        return name + " needs a value: " + (opt ? opt->get_type_name() : std::string("see connleak --help"));
    }
    if (std::regex_match(what, m, std::regex(R"((\S+): too many inputs for a flag)")) ||
        std::regex_match(what, m, std::regex(R"((\S+): Should be true/false or a number)")))
        return spelled(app, m[1], &opt) + " takes no value";
    if (std::regex_match(what, m, std::regex(R"(The following arguments? (?:was|were) not expected: (\S+).*)"))) {
        const std::string arg = m[1];
        if (!arg.empty() && arg[0] == '-')
            return "unknown option " + arg + " (see connleak --help)";
        return "unexpected argument " + arg + " (a command to launch goes after --; see connleak --help)";
    }
    if (std::regex_match(what, m, std::regex(R"((\S+): Value (\S+) not in range (\S+) to (\S+))")))
        return spelled(app, m[1], &opt) + ": " + std::string(m[2]) + " is not between " + std::string(m[3]) + " and " +
               std::string(m[4]);
    return what + " (see connleak --help)";
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
    {"--max-conns", 1u << 20, 112 + 88},  // 8 x the default: 200 MiB (live and inherited handles)
    {"--max-sites", 1u << 18, 200},       // 32 x: 50 MiB
    {"--max-procs", 1u << 16, 176},       // 16 x: 11 MiB
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

constexpr const char* kDescription =
    "connleak: find database connection leaks in running processes (libpq, eBPF)\n\n"
    "  connleak [OPTIONS] -p PID [-p PID ...]     attach to running processes\n"
    "  connleak [OPTIONS] -- COMMAND [ARGS ...]   launch COMMAND, traced from its first instruction\n"
    "  connleak [OPTIONS] --all                   every process on the host using libpq, now and later";

// The description gives the three forms of the command line; CLI11's own
// "Usage: connleak [OPTIONS]" under them said less, a second time.
class NoUsageLine : public CLI::Formatter {
public:
    std::string make_usage(const CLI::App*, std::string) const override { return ""; }
};

// The options, on `app`, writing into `o`: shared by parse_options and the
// man page, so both list the same options with the same words.
void add_options(CLI::App& app, Options& o)
{
    app.footer(help_footer());
    app.add_option("-p,--pid", o.pids,
                   "Attach to this running process and the processes under it (repeatable; -p 1 needs "
                   "--no-follow: all run under it)")
        ->type_name("PID");
    app.add_flag("--all", o.all,
                 "Trace every process on the host that maps a libpq, now and later, containers included "
                 "(connleak itself never)");
    app.add_option("-i,--interval", o.interval_s, "Report every SEC seconds")->default_val(2)->type_name("SEC");
    app.add_option("-d,--duration", o.duration_s,
                   "Stop after SEC seconds (default: Ctrl-C, or when every target exits)")
        ->type_name("SEC");
    app.add_option("-j,--json", o.json_path,
                   "Write the JSON snapshot to FILE each interval and at exit (atomically); - for JSON Lines on stdout")
        ->type_name("FILE");
    app.add_option("--leak-after", o.leak_after_s,
                   "A live connection this many seconds old is a leak (0: every live one)")
        ->default_val(kDefaultLeakAfterS)
        ->type_name("SEC");
    app.add_option("--libpq", o.libpq_path, "Probe this libpq instead of the one the target maps")->type_name("PATH");
    app.add_option("--top", o.top_sites, "Sites listed per process")->default_val(10)->type_name("N");
    app.add_option("--connections", o.connections_shown,
                   "Live connections the JSON lists per process, oldest (leaks) first; connections_total "
                   "counts them all")
        ->default_val(kDefaultConnectionsShown)
        ->type_name("N");
    app.add_option("--connections-max", o.connections_listed_max,
                   "Live connections the JSON lists in all processes together, the oldest first "
                   "(connections_listed); each process's connections_total still counts all of its own")
        ->default_val(kDefaultConnectionsListedMax)
        ->type_name("N");
    app.add_flag("!--no-follow", o.follow_children, "Do not trace children forked by traced processes");
    app.add_flag("-q,--quiet", o.quiet, "No text report (use with --json)");
    app.add_flag("--no-color", o.no_color, "No colours in the live view (also when NO_COLOR is set)");
    app.add_flag("--verbose", o.verbose, "libbpf's own log on stderr, e.g. the verifier's (also CONNLEAK_VERBOSE=1)");
    app.add_option("--kill-after", o.kill_after_s,
                   "When connleak ends first, SIGKILL what is left of a launched COMMAND this long after its SIGTERM")
        ->default_val(5)
        ->type_name("SEC");
    app.add_flag("--keep-command", o.keep_command,
                 "When connleak ends first, leave a launched COMMAND running and print its PID");
    app.add_option("--max-conns", o.max_conns,
                   "Live handles the kernel map holds, and as many socket records (default " +
                       std::to_string(CONNLEAK_MAX_CONNS) + ")")
        ->type_name("N");
    app.add_option("--max-sites", o.max_sites,
                   "Sites the kernel map holds (default " + std::to_string(CONNLEAK_MAX_SITES) + ")")
        ->type_name("N");
    app.add_option("--max-procs", o.max_procs,
                   "Processes the kernel map holds (default " + std::to_string(CONNLEAK_MAX_PROCS) + ")")
        ->type_name("N");
    app.add_option("--stack-size", o.stack_size,
                   "Bytes of user stack copied, for a stack the kernel cannot walk yet, and unwound with DWARF CFI "
                   "(0: no stacks)")
        ->default_val(CONNLEAK_STACK_SIZE)
        ->check(CLI::Range(0, CONNLEAK_STACK_SIZE_MAX).description(""))
        ->type_name("BYTES");
    app.add_option("--stacks", o.stack_frames, "Frames shown per stack in the text report and leak notices (a stack with Python frames shows those only)")
        ->default_val(10)
        ->type_name("N");
    app.add_flag("--notice-stacks", o.notice_stacks,
                 "Each leak notice on its own line with its whole stack (default: a site's stack once, "
                 "repeats folded; a stack with Python frames: those only)");
    app.add_option("--site-skip", o.site_skip,
                   "A frame matching this regex (\"func+0x1c (module) file.c:3\", or a Python frame "
                   "\"qualname (file.py:LINE)\") is not the site: driver glue "
                   "(repeatable; libpq and libpqxx are always skipped)")
        ->type_name("REGEX");
    app.add_option("--pool-frame", o.pool_frames,
                   "A frame matching this regex is a pool's code: handles acquired through it are pooled "
                   "(repeatable; psycopg2.pool, SQLAlchemy's pool and psycopg_pool are known)")
        ->type_name("REGEX");
    app.add_option("--debug-dir", o.debug_dir, "Where separate debug files live (.build-id/, debuglink)")
        ->default_val("/usr/lib/debug")
        ->type_name("DIR");
    app.add_option("--db-port", o.db_ports,
                   "A database server's TCP port, besides those libpq reaches (repeatable; default 5432)")
        ->type_name("PORT");
    app.add_option("--db-host", o.db_hosts, "A database server: ADDR, ADDR:PORT or [ADDR]:PORT (repeatable)")
        ->type_name("ADDR[:PORT]");
    app.add_option("--db-socket", o.db_socket_paths,
                   "A database server's Unix socket path, besides .s.PGSQL.<port> (repeatable)")
        ->type_name("PATH");
    app.add_option("--http", o.http,
                   "Serve /, /health/detailed, /snapshot.json and /metrics on [ADDR:]PORT (ADDR defaults to "
                   "127.0.0.1; port 0: any free port, printed)")
        ->type_name("[ADDR:]PORT");
    app.add_flag("!--no-sockets", o.sockets,
                 "Do not hold handles against the database sockets (no db_sockets, peer, tracking_discrepancy)");
    app.add_option("--server", o.servers,
                   "Join each connection with this server's pg_stat_activity (libpq conninfo or URI; repeatable; "
                   "the role needs pg_read_all_stats to see other users' sessions)")
        ->type_name("DSN");
    app.add_option("--server-queries", o.server_queries_text,
                   "With --server: whether each connection's last query is shown (on or off)")
        ->default_val("on")
        ->type_name("on|off");
}

// The DSNs of --server in argv replaced by x's once parsed: a password in
// one must not stay readable in /proc/PID/cmdline while connleak runs.
void hide_dsns(int argc, char** argv, const std::vector<std::string>& dsns)
{
    for (int i = 1; i < argc; i++) {
        char* value = argv[i];
        if (std::strncmp(value, "--server=", 9) == 0)
            value += 9;
        for (const std::string& dsn : dsns)
            if (!dsn.empty() && dsn == value)
                std::memset(value, 'x', dsn.size());
    }
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

    CLI::App app{kDescription, "connleak"};
    app.formatter(std::make_shared<NoUsageLine>());
    add_options(app, o);

    try {
        app.parse(split, argv);
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        std::exit(0);
    } catch (const CLI::ParseError& e) {
        usage_error_line(parse_error_message(e, app));
    }
    // Ranges checked here, not by CLI11's validators, whose messages print
    // DBL_MAX in full.
    if (!(o.interval_s > 0))
        usage_error("--interval must be a number of seconds above 0");
    if (!(o.duration_s >= 0))
        usage_error("--duration must be a number of seconds, 0 or more");
    if (!(o.kill_after_s >= 0))
        usage_error("--kill-after must be a number of seconds, 0 or more");
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
    if (o.all && (!o.pids.empty() || !o.command.empty()))
        usage_error("--all traces every process already: give no -p PID or -- COMMAND with it");
    if (o.all && !o.follow_children)
        usage_error("--all follows every process: --no-follow does not go with it");
    if (o.connections_shown == 0)
        usage_error("--connections must be 1 or more");
    if (o.connections_listed_max == 0)
        usage_error("--connections-max must be 1 or more");
    if (o.pids.empty() && o.command.empty() && !o.all)
        usage_error("nothing to trace: give -p PID, -- COMMAND or --all");
    if (!o.pids.empty() && !o.command.empty())
        usage_error("give -p PID or -- COMMAND, not both");
    if (o.command.empty() && (app.count("--keep-command") || app.count("--kill-after")))
        usage_error(std::string(app.count("--keep-command") ? "--keep-command" : "--kill-after") +
                    " is about a launched command: give -- COMMAND");
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
    for (const std::string& re : o.pool_frames)
        try {
            std::regex check(re);
        } catch (const std::regex_error& e) {
            usage_error("--pool-frame " + re + ": " + e.what());
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
    if (app.count("--http")) {
        auto addr = parse_http_address(o.http);
        if (!addr)
            usage_error("--http " + o.http + ": not PORT, ADDR:PORT or [IPV6ADDR]:PORT (ADDR an IP address)");
        o.http_address = *addr;
    }
    if (o.server_queries_text != "on" && o.server_queries_text != "off")
        usage_error("--server-queries must be on or off");
    o.server_queries = o.server_queries_text == "on";
    // libpq is loaded for --server only (libpq_api.h): without it, one line
    // and exit 1, a runtime failure (the host lacks it; the command is right).
    if (!o.servers.empty())
        if (auto api = libpq_api(); !api) {
            std::fprintf(stderr, "connleak: --server: %s\n", api.error().message.c_str());
            std::exit(1);
        }
    for (size_t i = 0; i < o.servers.size(); i++) {
        // libpq's message names what is wrong, never the DSN (which may hold a password).
        auto label = server_label(o.servers[i]);
        if (!label)
            usage_error("--server #" + std::to_string(i + 1) + ": " + label.error().message);
        o.server_labels.push_back(label.value());
    }
    // Every process runs under PID 1: following it is --all without the
    // opt-in, probes in every libpq user on the host. Checked last, so a
    // wrong value of another option is still named first.
    if (o.follow_children && std::count(o.pids.begin(), o.pids.end(), 1u))
        usage_error_line("-p 1 would trace every process on the host (all run under PID 1): give --all for that, "
                         "or -p 1 --no-follow for PID 1 alone");
    hide_dsns(split, argv, o.servers);
    return o;
}

std::vector<OptionHelp> option_help()
{
    Options o;
    CLI::App app{kDescription, "connleak"};
    add_options(app, o);
    std::vector<OptionHelp> list;
    for (const CLI::Option* opt : app.get_options()) {
        std::string names;
        for (const std::string& s : opt->get_snames())
            names += (names.empty() ? "-" : ", -") + s;
        for (const std::string& l : opt->get_lnames())
            names += (names.empty() ? "--" : ", --") + l;
        std::string text = opt->get_description();
        if (!opt->get_default_str().empty() && opt->get_type_size() != 0)
            text += " (default " + opt->get_default_str() + ")";
        list.push_back({names, opt->get_type_size() == 0 ? "" : opt->get_type_name(), text});
    }
    return list;
}

}  // namespace connleak
