// connleak: attach to processes (or launch one), count their libpq
// connections in the kernel, and report leaks each interval.
#include <algorithm>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <malloc.h>
#include <map>
#include <optional>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "atomic_file.h"
#include "clock.h"
#include "connleak_loader.h"
#include "container_label.h"
#include "handle_states.h"
#include "host_watch.h"
#include "http_service.h"
#include "json_output.h"
#include "launcher.h"
#include "leak_notices.h"
#include "libpq_locator.h"
#include "live_view.h"
#include "model.h"
#include "options.h"
#include "preflight.h"
#include "process_tree.h"
#include "python_watch.h"
#include "report_sink.h"
#include "server_annotator.h"
#include "session.h"
#include "site_names.h"
#include "sockets_loader.h"
#include "stack_table.h"
#include "symbolizer.h"
#include "text_report.h"
#include "tracer_source.h"

namespace connleak {
namespace {

// Minor page faults of this thread so far (measurements: CONNLEAK_SCALE_STATS).
long minor_faults()
{
    rusage u{};
    getrusage(RUSAGE_THREAD, &u);
    return u.ru_minflt;
}

int fail(const std::string& message)
{
    std::fprintf(stderr, "connleak: %s\n", message.c_str());
    return 1;
}

bool libbpf_verbose = getenv("CONNLEAK_VERBOSE") != nullptr;  // or --verbose

int libbpf_quiet(enum libbpf_print_level level, const char* format, va_list args)
{
    // libbpf's own lines would bury connleak's one-line diagnostics; they
    // are there when asked for.
    (void)level;
    return libbpf_verbose ? vfprintf(stderr, format, args) : 0;
}

// The processes -p names, and (unless --no-follow) those under them now:
// a gunicorn master and the workers it already forked.
std::vector<uint32_t> attach_targets(const Options& o)
{
    std::vector<uint32_t> targets = o.pids;
    if (o.follow_children && !o.pids.empty())
        for (uint32_t pid : descendants(o.pids))
            if (std::find(targets.begin(), targets.end(), pid) == targets.end())
                targets.push_back(pid);
    return targets;
}

// A libpq of each named process, or of a process under it (a master
// without libpq whose workers load it is fine). Errors name the process.
Result<std::vector<std::string>> libpqs_of_trees(const Options& o)
{
    std::vector<std::string> paths;
    const std::map<uint32_t, uint32_t> parents = o.follow_children ? parent_links() : std::map<uint32_t, uint32_t>{};
    for (uint32_t pid : o.pids) {
        auto own = libpq_of_process(pid);
        bool found = own.ok();
        if (own)
            paths.push_back(own.value());
        for (uint32_t child : descendants_in(parents, {pid}))
            if (auto path = libpq_of_process(child)) {
                paths.push_back(path.value());
                found = true;
            }
        if (!found)
            return own.error();
    }
    return paths;
}

// The probe targets: --libpq, else each process's own libpq, else (for a
// launched command) the system's.
Result<std::vector<std::string>> find_libpqs(const Options& o)
{
    std::vector<std::string> paths;
    for (uint32_t pid : o.pids)
        if (!process_exists(pid))
            return Error{"no process with PID " + std::to_string(pid)};
    if (!o.libpq_path.empty()) {
        SymbolizerOptions no_debug;
        no_debug.use_debug_files = false;
        Symbolizer symbols(no_debug);
        auto defines = [&](const std::string& path, const char* function) {
            return symbols.function_offset(path, function).has_value();
        };
        if (auto s = check_libpq_file(o.libpq_path, defines); !s)
            return Error{"cannot use --libpq " + o.libpq_path + ": " + s.error().message};
        paths.push_back(o.libpq_path);
        return paths;
    }
    if (auto trees = libpqs_of_trees(o); !trees)
        return trees.error();
    else
        paths = trees.value();
    if (!o.command.empty()) {
        auto path = system_libpq();
        if (!path)
            return path.error();
        paths.push_back(path.value());
    }
    return paths;
}

// The live view when a person watches a terminal; plain text for pipes,
// files and CI (and when the terminal cannot be taken).
std::unique_ptr<ReportSink> make_sink(const Options& o)
{
    if (o.json_path == "-")
        return make_json_lines_sink();
    if (o.quiet)
        return make_null_sink();
    if (live_view_possible()) {
        LiveViewOptions lv;
        lv.interval_s = o.interval_s;
        lv.color = color_wanted(o.no_color);
        lv.pre_attach_hint = o.servers.empty();  // with --server, the rows say it
        if (auto view = make_live_view(lv))
            return view;
    }
    return make_text_sink(o.servers.empty());  // with --server, the rows say it
}

double seconds_since(uint64_t start_ns)
{
    return (monotonic_ns() - start_ns) / 1e9;
}

// SIGINT or SIGTERM arrived during start-up: blocked for the signalfd, they
// wait as pending, and each step of the start-up looks for them.
bool stop_pending()
{
    sigset_t pending;
    return sigpending(&pending) == 0 && (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1);
}

// The end of a start-up cut short by a signal. What was attached is
// detached, and a launched command still at the gate is killed (both by
// their destructors, as run() returns).
int interrupted_at_start()
{
    return fail("interrupted during start-up: nothing was traced");
}

// Traced processes still running (a launched command's children, orphaned
// ones included).
std::vector<uint32_t> traced_running(Tracer& tracer)
{
    std::vector<uint32_t> pids;
    for (const RawProcess& p : tracer.read_processes())
        if (!p.stats.exited_ns && process_exists(p.pid))
            pids.push_back(p.pid);
    return pids;
}

// Stops a launched command that outlived connleak's run (see README "A
// launched command"). Returns what to tell the user, or "".
std::string stop_command(Launcher& launcher, const Options& o, bool terminal_sigint, Tracer& tracer, Session& session,
                         int sigfd)
{
    auto traced = [&] { return traced_running(tracer); };
    if (launcher.running_tree(traced()).empty())
        return "";
    // Between checks the ring buffer is drained; another Ctrl-C or SIGTERM
    // means "now": SIGKILL without waiting out the grace.
    auto wait = [&] {
        pollfd fd = {sigfd, POLLIN, 0};
        poll(&fd, 1, 100);
        session.consume_events();
        signalfd_siginfo si;
        bool again = false;
        while (read(sigfd, &si, sizeof(si)) == sizeof(si))
            again = again || si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM;
        return !again;
    };
    const size_t killed = launcher.stop(o.kill_after_s, terminal_sigint, traced, wait);
    if (killed == 0)
        return "";
    char grace[32];
    std::snprintf(grace, sizeof(grace), "%g", o.kill_after_s);
    return "stopped " + o.command[0] + " (PID " + std::to_string(launcher.pid()) + "): " + std::to_string(killed) +
           (killed == 1 ? " process" : " processes") + " still running " + grace +
           " s after SIGTERM, killed (--kill-after)";
}

// With --keep-command: what connleak leaves running.
std::string still_running(Launcher& launcher, const Options& o, Tracer& tracer)
{
    const std::vector<pid_t> left = launcher.running_tree(traced_running(tracer));
    if (left.empty())
        return "";
    std::string under;
    for (pid_t pid : left)
        if (pid != launcher.pid())
            under += " " + std::to_string(pid);
    const std::string& name = o.command[0];
    if (!std::count(left.begin(), left.end(), launcher.pid()))
        return name + " exited; left running under it (--keep-command): PID" + under;
    return "left " + name + " running (--keep-command): PID " + std::to_string(launcher.pid()) +
           (under.empty() ? "" : ", under it PID" + under);
}

int run(const Options& o)
{
    if (auto s = check_privileges(); !s)
        return fail(s.error().message);
    if (auto s = check_kernel_btf(); !s)
        return fail(s.error().message);
    if (!o.json_path.empty() && o.json_path != "-")
        if (std::string err = check_writable(o.json_path); !err.empty())
            return fail(err);
    // --all finds its files itself (HostWatch); --libpq is one more then.
    auto libpqs = o.all ? Result<std::vector<std::string>>(std::vector<std::string>{}) : find_libpqs(o);
    if (!libpqs)
        return fail(libpqs.error().message);
    if (o.all && !o.libpq_path.empty()) {
        auto given = find_libpqs(o);
        if (!given)
            return fail(given.error().message);
        libpqs = given;
    }
    // Bound before anything is attached: a port in use ends connleak here.
    std::unique_ptr<HttpService> http;
    if (!o.http.empty()) {
        HttpServiceOptions hopts;
        hopts.top_sites = o.top_sites;
        hopts.refresh_s = static_cast<int>(std::ceil(o.interval_s));
        auto h = HttpService::bind(o.http_address, hopts);
        if (!h)
            return fail(h.error().message);
        http = std::move(h.value());
        const std::string url = http_url(o.http_address.host, http->port());
        if (o.http_address.loopback)
            std::fprintf(stderr, "connleak: serving %s/ (/health/detailed, /snapshot.json, /metrics)\n", url.c_str());
        else
            std::fprintf(stderr,
                         "connleak: serving %s/ (/health/detailed, /snapshot.json, /metrics) on a non-loopback "
                         "address: anyone who can reach it can read the report\n",
                         url.c_str());
    }

    TracerConfig cfg;
    cfg.follow_children = o.follow_children;
    cfg.max_conns = o.max_conns;
    cfg.max_sites = o.max_sites;
    cfg.max_procs = o.max_procs;
    cfg.stack_size = o.stack_size;
    cfg.trace_all = o.all;
    auto tracer = Tracer::load(cfg);
    if (!tracer)
        return fail(tracer.error().message);
    std::unique_ptr<SocketTracer> sockets;  // optional: handles are counted without it
    if (o.sockets) {
        // Idle times and last users: the send/recv hooks on libpq's sockets,
        // whose entries the socket tracer makes (without the hooks: none).
        SocketConfig sc;
        sc.db_ports = o.db_ports;
        sc.db_hosts = o.db_host_peers;
        sc.db_sockets = o.db_socket_paths;
        // A record per socket a live handle holds: as many as handles.
        sc.max_socks = o.max_conns ? o.max_conns : CONNLEAK_MAX_CONNS;
        if (auto io = tracer.value()->attach_socket_io(o.all); io) {
            sc.sock_io_fd = tracer.value()->sock_io_map_fd();
            sc.sock_io_mark_fd = tracer.value()->sock_io_mark_fd();
            sc.sock_io_hooks_fd = tracer.value()->sock_io_hooks_fd();
            sc.io_wake_fd = tracer.value()->io_wake_fd();
            sc.sock_io_cgroups_fd = tracer.value()->sock_io_cgroups_fd();
            sc.sock_io_writes_fd = tracer.value()->sock_io_writes_fd();
        } else {
            std::fprintf(stderr, "connleak: warning: %s\n", io.error().message.c_str());
        }
        auto s = SocketTracer::load(tracer.value()->procs_map_fd(), sc);
        if (s) {
            sockets = std::move(s.value());
        } else {
            std::fprintf(stderr, "connleak: warning: %s: no socket tracking\n", s.error().message.c_str());
            tracer.value()->detach_socket_io();  // no socket is marked: the hooks would run for nothing
        }
    }

    // Until here nothing is in any process, and a SIGINT or SIGTERM during
    // the loads (seconds on a busy machine) ends connleak at once, by the
    // signal; the kernel frees what was loaded. From here signals arrive on
    // a signalfd, polled with the sink's keyboard in the report loop (no
    // handler runs at an arbitrary point), and start-up looks for them
    // between steps.
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGWINCH})
        sigaddset(&signals, sig);
    sigprocmask(SIG_BLOCK, &signals, nullptr);
    int sigfd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        return fail(std::string("signalfd: ") + std::strerror(errno));
    // A reader that went away (`-j - | head`) is an end, seen as EPIPE by
    // the sink, not a signal that kills connleak before it detaches.
    signal(SIGPIPE, SIG_IGN);

    std::optional<Launcher> launcher;
    const std::vector<uint32_t> attached = attach_targets(o);  // -p and what runs under them
    std::vector<uint32_t> targets = attached;
    if (!o.command.empty()) {
        auto l = Launcher::start(o.command);
        if (!l)
            return fail(l.error().message);
        launcher.emplace(std::move(l.value()));
        targets.push_back(static_cast<uint32_t>(launcher->pid()));
    }
    // --server: connleak's own connections, made only now, after the fork of
    // a launched command (which must not inherit them); connleak's own
    // process is never in the traced set, so they are never counted.
    std::unique_ptr<ServerAnnotator> server;
    if (!o.servers.empty()) {
        ActivityReaderOptions ropts;
        ropts.dsns = o.servers;
        ropts.interval_s = o.interval_s;
        ropts.queries = o.server_queries;
        server = std::make_unique<ServerAnnotator>(ropts);
        server->start();
    }
    auto say_server = [&] {
        if (server)
            for (const std::string& m : server->take_messages())
                std::fprintf(stderr, "connleak: %s\n", m.c_str());
    };
    for (uint32_t pid : targets)
        if (auto s = tracer.value()->trace_process(pid); !s)
            return fail(s.error().message);
    // Their cgroups get the TCP sock_ops program: a launched command's is
    // connleak's own, attached before the command runs.
    tracer.value()->cover_traffic(targets);
    // Following children needs the probes in every process (a child can
    // connect before we could attach to it); without, only the targets get
    // breakpoints and other libpq users on the host pay nothing.
    const std::vector<uint32_t> probe_only = o.follow_children ? std::vector<uint32_t>{} : targets;
    for (const std::string& path : libpqs.value()) {
        if (stop_pending())
            return interrupted_at_start();
        if (auto s = tracer.value()->attach_libpq(path, probe_only, stop_pending); !s)
            return stop_pending() ? interrupted_at_start() : fail(s.error().message);
        if (sockets)
            if (auto s = sockets->attach_libpq(path, probe_only); !s)
                return fail(s.error().message);
    }
    // --all: the host's own libpq (so processes started later are traced
    // from their first call), then every libpq some process maps.
    std::vector<uint32_t> found_at_start;
    Session* running = nullptr;  // from the report loop on: new processes' files are learnt at once
    HostWatch host(*tracer.value(), sockets.get(), [&](uint32_t pid) {
        if (running)
            running->names().learn_process(pid);
        else
            found_at_start.push_back(pid);
    });
    if (o.all) {
        if (auto system = system_libpq())
            if (auto s = host.probe_path(system.value(), stop_pending); !s && !stop_pending())
                return fail(s.error().message);
        for (const std::string& path : libpqs.value())
            if (auto s = host.probe_path(path, stop_pending); !s && !stop_pending())
                return fail(s.error().message);
        host.scan(true, stop_pending);
    }
    if (stop_pending())
        return interrupted_at_start();
    if (sockets)  // what the targets hold now predates the attach
        for (uint32_t pid : attached)
            sockets->add_process(pid);
    // The same processes as the sockets: with -p MASTER of a pre-forking
    // server, its workers hold the connections, the master often none.
    if (server)
        for (uint32_t pid : attached)
            server->add_process(pid);

    std::unique_ptr<ReportSink> sink = make_sink(o);
    if (http) {
        sink = publishing_sink(std::move(sink), *http);
        http->start();  // after the signal mask: its threads block every signal
    }
    StackOptions sopts;
    sopts.site_skip.insert(sopts.site_skip.end(), o.site_skip.begin(), o.site_skip.end());
    sopts.debug_root = o.debug_dir;
    Tracer* kernel = tracer.value().get();
    sopts.learn = [kernel](const unwind_key& key, const unwind_step& step) { kernel->learn_unwind_step(key, step); };
    sopts.keep_costs = getenv("CONNLEAK_STACK_STATS") != nullptr;  // its summary at the end
    StackTable stacks(sopts);
    SessionConfig scfg;
    scfg.leak_after_s = o.leak_after_s;
    scfg.top_sites = o.top_sites;
    scfg.stack_frames = o.stack_frames;
    scfg.notice_stacks = o.notice_stacks;
    scfg.json_path = o.json_path;
    scfg.connections_shown = o.connections_shown;
    scfg.connections_listed_max = o.connections_listed_max;
    scfg.pool_frames.insert(scfg.pool_frames.end(), o.pool_frames.begin(), o.pool_frames.end());
    TracerSource source(*tracer.value());
    Session session(scfg, source, *sink, stacks);
    ContainerLabels containers;
    HandleStates handle_states;
    uint64_t sockets_cpu_ns = 0;  // measurements (CONNLEAK_SCALE_STATS)
    session.set_annotator([&](RawState& raw) {
        containers.label(raw);
        const uint64_t sockets_start = thread_cpu_ns();
        tracer.value()->cover_traffic(raw.processes);  // the cgroups of processes that joined
        // TCP receive times, before the sockets are read.
        tracer.value()->refresh_traffic(!sockets || sockets->sock_ops_sockets_possible());
        if (sockets)
            sockets->annotate(raw);
        sockets_cpu_ns += thread_cpu_ns() - sockets_start;
        if (server)
            server->annotate(raw);
        handle_states.annotate(raw);
    });
    for (uint32_t pid : attached)
        session.names().learn_process(pid);
    for (uint32_t pid : found_at_start)
        session.names().learn_process(pid);
    running = &session;
    if (stop_pending()) {
        sink.reset();  // the terminal back first, or the message is lost with the view
        return interrupted_at_start();
    }
    if (launcher) {
        session.names().learn_file(launcher->executable());
        if (auto s = launcher->release(); !s) {
            sink.reset();  // the terminal back first, or the message is lost with the view
            return fail(s.error().message);
        }
    }

    // Python interpreters: which processes get Python frames.
    // (CONNLEAK_NO_PYTHON: none, for the benchmark's A/B.)
    const bool python_frames = getenv("CONNLEAK_NO_PYTHON") == nullptr;
    PythonWatcher python(tracer.value()->python_map_fd());
    // The process list read only when it moved, a traced process exec'ed,
    // or one settles: a read of 1,000 entries every 0.1 s was ~8 ms of
    // CPU a second at scale. The counts first: a change after them is seen
    // at the next look.
    std::optional<std::pair<uint64_t, uint64_t>> python_looked;  // procs_changes, traced_execs
    auto python_poll = [&] {
        const std::pair<uint64_t, uint64_t> now_counts{tracer.value()->procs_changes(), tracer.value()->traced_execs()};
        const uint64_t now = monotonic_ns();
        if (python_looked == now_counts && !python.settling(now) && !python.waiting())
            return;
        python_looked = now_counts;
        python.poll(tracer.value()->read_processes(), now, now_counts.second);
    };
    if (python_frames)
        python_poll();

    const uint64_t start = monotonic_ns();
    double next_report = o.interval_s;
    // --all: libpq files nobody mapped before (a new container, a private
    // copy, a dlopen of another file) are found by a scan of every
    // process's maps, once a second (its cost: BENCHMARKS.md).
    constexpr double kHostScanS = 1.0, kHostFullScanS = 30.0;
    double next_scan = kHostScanS, next_full_scan = kHostFullScanS;
    uint64_t report_ns_max = 0, report_ns_last = 0, reports = 0;
    const bool scale_stats = getenv("CONNLEAK_SCALE_STATS") != nullptr;  // measurements (bench/ scale)
    bool interrupted = false;
    bool terminal_sigint = false;
    for (;;) {
        // Wake every 100 ms: to handle the events a thread drained from the
        // ring buffer (it wakes us early when the kernel woke it, or a MiB
        // waits: event_drain.h) and to notice targets that exited.
        double until = next_report;
        if (o.duration_s > 0 && o.duration_s < until)
            until = o.duration_s;
        // A new process settling (its Python runtime not found yet): look
        // again within 10 ms, so its first connect already has Python frames.
        const double pace = python_frames && python.settling(monotonic_ns()) ? 0.01 : 0.1;
        double wait_s = std::min(pace, std::max(0.0, until - seconds_since(start)));
        pollfd fds[3] = {{sigfd, POLLIN, 0}, {sink->input_fd(), POLLIN, 0}, {tracer.value()->events_fd(), POLLIN, 0}};
        const int ready = poll(fds, 3, static_cast<int>(wait_s * 1000));
        // Python layouts first: the events below may take a while to unwind
        // (a new process's modules), and until its layout is in the kernel
        // its stacks go without Python frames.
        if (python_frames)
            python_poll();
        session.consume_events();
        say_server();
        if (ready > 0) {
            signalfd_siginfo si;
            while (read(sigfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
                    interrupted = true;
                    // Ctrl-C at a terminal: the kernel sent SIGINT to the
                    // whole foreground process group, a launched command's
                    // included.
                    terminal_sigint = terminal_sigint || (si.ssi_signo == SIGINT && si.ssi_code == SI_KERNEL);
                } else if (si.ssi_signo == SIGWINCH)
                    sink->resized();
            }
            if (fds[1].fd >= 0 && (fds[1].revents & POLLIN) && !sink->handle_input())
                interrupted = true;
        }
        if (interrupted)
            break;
        if (launcher && launcher->poll_exit() && session.all_exited())
            break;
        if (!launcher && !o.all && session.all_exited())
            break;
        if (o.all && seconds_since(start) >= next_scan) {
            const bool full = seconds_since(start) >= next_full_scan;
            host.scan(full, [&] { return false; });
            next_scan = seconds_since(start) + kHostScanS;
            if (full)
                next_full_scan = seconds_since(start) + kHostFullScanS;
        }
        if (o.duration_s > 0 && seconds_since(start) >= o.duration_s)
            break;
        if (seconds_since(start) >= next_report) {
            const uint64_t report_start = monotonic_ns(), report_cpu_start = thread_cpu_ns();
            const uint64_t handles_cpu_start = handle_states.read_cpu_ns(), sockets_cpu_start = sockets_cpu_ns;
            const uint64_t handle_reads_start = handle_states.reads(), handle_skips_start = handle_states.skipped();
            const uint64_t fd_tables_start = sockets ? sockets->fd_tables_read() : 0;
            const uint64_t socket_reports_start = sockets ? sockets->reports_built() : 0;
            const uint64_t records_reads_start = sockets ? sockets->records_reads() : 0;
            const uint64_t traffic_walks_start = sockets ? sockets->traffic_walks() : 0;
            const uint64_t tcp_iterator_start = tracer.value()->tcp_iterator_runs();
            const Session::Cost cost_start = session.cost();
            const long faults_start = scale_stats ? minor_faults() : 0;
            const std::string err = session.report(false);
            // What the report freed goes back to the system: at scale most of
            // a report's memory lives only while it is built, and glibc would
            // keep those pages (fragmented between what stays) for good.
            malloc_trim(0);
            report_ns_last = monotonic_ns() - report_start;
            // Pages the report touched afresh: what it built anew that the
            // trim gave back (~2 us each on a VM), steadier than its CPU time.
            const long report_faults = scale_stats ? minor_faults() - faults_start : 0;
            const uint64_t report_cpu_ns = thread_cpu_ns() - report_cpu_start;
            report_ns_max = std::max(report_ns_max, report_ns_last);
            reports++;
            if (scale_stats)  // one line per report: bench/ picks those of a known state
                std::fprintf(stderr,
                             "connleak-scale: report_ms=%.2f report_cpu_ms=%.2f sockets_cpu_ms=%.2f "
                             "handle_reads_cpu_ms=%.2f handle_reads=%" PRIu64 " handle_reads_skipped=%" PRIu64
                             " fd_tables_read=%" PRIu64
                             " collect_cpu_ms=%.2f model_cpu_ms=%.2f notices_cpu_ms=%.2f output_cpu_ms=%.2f"
                             " socket_reports_built=%" PRIu64 " socket_records_reads=%" PRIu64 " page_faults=%ld"
                             " traffic_walks=%" PRIu64 " tcp_iterator_runs=%" PRIu64 "\n",
                             report_ns_last / 1e6, report_cpu_ns / 1e6, (sockets_cpu_ns - sockets_cpu_start) / 1e6,
                             (handle_states.read_cpu_ns() - handles_cpu_start) / 1e6,
                             handle_states.reads() - handle_reads_start, handle_states.skipped() - handle_skips_start,
                             (sockets ? sockets->fd_tables_read() : 0) - fd_tables_start,
                             (session.cost().collect_ns - cost_start.collect_ns) / 1e6,
                             (session.cost().model_ns - cost_start.model_ns) / 1e6,
                             (session.cost().notices_ns - cost_start.notices_ns) / 1e6,
                             (session.cost().output_ns - cost_start.output_ns) / 1e6,
                             (sockets ? sockets->reports_built() : 0) - socket_reports_start,
                             (sockets ? sockets->records_reads() : 0) - records_reads_start, report_faults,
                             (sockets ? sockets->traffic_walks() : 0) - traffic_walks_start,
                             tracer.value()->tcp_iterator_runs() - tcp_iterator_start);
            if (!err.empty()) {
                sink.reset();  // the terminal back first, or the message is lost with the view
                return fail(err);
            }
            next_report += o.interval_s;
            if (sink->output_error())
                break;
        }
    }
    // A launched command ends with connleak, as under `timeout` or `perf
    // record --`, unless --keep-command; before the final report, so that
    // report counts its exits.
    const std::optional<int> command_status = launcher ? launcher->poll_exit() : std::nullopt;
    std::string command_fate;
    if (launcher && !o.keep_command)
        command_fate = stop_command(*launcher, o, terminal_sigint, *tracer.value(), session, sigfd);
    say_server();
    if (std::string err = session.report(true); !err.empty())
        return fail(err);
    if (launcher && o.keep_command)
        command_fate = still_running(*launcher, o, *tracer.value());
    if (!command_fate.empty())
        std::fprintf(stderr, "connleak: %s\n", command_fate.c_str());
    // The reader of stdout went away (`| head`): an end like Ctrl-C, said by
    // nothing. Any other failure to write the report is one.
    if (int err = sink->output_error(); err && err != EPIPE)
        return fail(std::string("cannot write the report to stdout: ") + std::strerror(err));
    if (getenv("CONNLEAK_STACK_STATS")) {  // measurements: what unwinding cost
        std::fputs(stacks.cost_summary().c_str(), stderr);
        std::fprintf(stderr, "event queue peak: %zu bytes\n", tracer.value()->event_queue_peak_bytes());
    }
    if (scale_stats) {  // report and host scan cost
        const HostWatch::Cost& c = host.cost();
        std::fprintf(stderr,
                     "connleak-scale: reports=%" PRIu64 " report_ms_last=%.2f report_ms_max=%.2f host_scans=%" PRIu64
                     " host_scan_ms_avg=%.2f host_scan_ms_max=%.2f maps_read=%" PRIu64 " full_scans=%" PRIu64
                     " full_scan_ms_avg=%.2f attach_ms=%.1f\n",
                     reports, report_ns_last / 1e6, report_ns_max / 1e6, c.scans,
                     c.scans ? c.total_ns / 1e6 / c.scans : 0.0, c.max_ns / 1e6, c.maps_read, c.full_scans,
                     c.full_scans ? c.full_ns / 1e6 / c.full_scans : 0.0, c.attach_ns / 1e6);
    }
    if (getenv("CONNLEAK_HANDLE_STATS"))  // measurements: what reading handle state cost
        std::fprintf(stderr, "handle reads: %llu, failed %llu, %.2f us each, %.2f us CPU\n",
                     static_cast<unsigned long long>(handle_states.reads()),
                     static_cast<unsigned long long>(handle_states.failed_reads()),
                     handle_states.reads() ? handle_states.read_ns() / 1e3 / handle_states.reads() : 0.0,
                     handle_states.reads() ? handle_states.read_cpu_ns() / 1e3 / handle_states.reads() : 0.0);
    if (server && getenv("CONNLEAK_SERVER_STATS"))  // measurements: what --server cost
        std::fputs(server->cost_summary().c_str(), stderr);
    // Ctrl-C is a normal end, and so is --duration when it stopped the
    // command. A command that ended by itself gives connleak its status, so
    // connleak can stand in for it in scripts.
    if (command_status && !interrupted)
        return *command_status;
    return 0;
}

}  // namespace
}  // namespace connleak

int main(int argc, char** argv)
{
    // libbpf reads and parses the kernel's BTF (~5.5 MB, two copies at
    // once) at each object load. glibc's adaptive mmap threshold would keep
    // those freed blocks in the heap for good; a fixed threshold serves them
    // from mmap and gives them back, so connleak's resident memory while
    // tracing is its working set, not its start-up.
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    connleak::Options opts = connleak::parse_options(argc, argv);
    connleak::libbpf_verbose = connleak::libbpf_verbose || opts.verbose;
    libbpf_set_print(connleak::libbpf_quiet);
    return connleak::run(opts);
}
