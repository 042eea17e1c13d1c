#include "options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "connleak.h"

namespace connleak {
namespace {

[[noreturn]] void usage_error(const std::string& msg)
{
    std::fprintf(stderr, "connleak: %s (see connleak --help)\n", msg.c_str());
    std::exit(2);
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
    app.add_option("-i,--interval", o.interval_s, "Report every SEC seconds")->default_val(2)->check(CLI::PositiveNumber);
    app.add_option("-d,--duration", o.duration_s, "Stop after SEC seconds (default: Ctrl-C, or when every target exits)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("-j,--json", o.json_path, "Write the JSON snapshot to FILE each interval and at exit (atomically); - for JSON Lines on stdout");
    app.add_option("--leak-after", o.leak_after_s, "A live connection this many seconds old is a leak (0: every live one)")
        ->default_val(30)->check(CLI::NonNegativeNumber);
    app.add_option("--libpq", o.libpq_path, "Probe this libpq instead of the one the target maps");
    app.add_option("--top", o.top_sites, "Sites listed per process")->default_val(10)->check(CLI::PositiveNumber);
    app.add_flag("!--no-follow", o.follow_children, "Do not trace children forked by traced processes");
    app.add_flag("-q,--quiet", o.quiet, "No text report (use with --json)");
    app.add_option("--max-conns", o.max_conns, "Live handles the kernel map holds (default " + std::to_string(CONNLEAK_MAX_CONNS) + ")")
        ->check(CLI::PositiveNumber);
    app.add_option("--max-sites", o.max_sites, "Sites the kernel map holds (default " + std::to_string(CONNLEAK_MAX_SITES) + ")")
        ->check(CLI::PositiveNumber);
    app.add_option("--max-procs", o.max_procs, "Processes the kernel map holds (default " + std::to_string(CONNLEAK_MAX_PROCS) + ")")
        ->check(CLI::PositiveNumber);
    app.footer("Exit status: 0 done (with COMMAND: its exit status), 1 runtime failure, 2 usage error.");

    try {
        app.parse(split, argv);
    } catch (const CLI::CallForHelp&) {
        std::printf("%s", app.help().c_str());
        std::exit(0);
    } catch (const CLI::ParseError& e) {
        usage_error(e.what());
    }
    if (o.pids.empty() && o.command.empty())
        usage_error("nothing to trace: give -p PID or -- COMMAND");
    if (!o.pids.empty() && !o.command.empty())
        usage_error("give -p PID or -- COMMAND, not both");
    for (uint32_t pid : o.pids)
        if (pid == 0)
            usage_error("-p 0 is not a process id");
    return o;
}

}  // namespace connleak
