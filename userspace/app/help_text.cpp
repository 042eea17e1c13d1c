#include "help_text.h"

#include <sstream>

namespace connleak {
namespace {

constexpr size_t kWidth = 80;

// Words of `text` filled into lines of kWidth, each begun by `indent`
// spaces, the first by `first` (already written by the caller when it
// holds the term).
std::string fill(const std::string& text, size_t indent, size_t first_used)
{
    std::istringstream words(text);
    std::string word, out;
    size_t used = first_used;
    bool line_empty = true;
    while (words >> word) {
        if (!line_empty && used + 1 + word.size() > kWidth) {
            out += "\n" + std::string(indent, ' ');
            used = indent;
            line_empty = true;
        }
        if (!line_empty) {
            out += ' ';
            used++;
        }
        out += word;
        used += word.size();
        line_empty = false;
    }
    return out + "\n";
}

// "  term   text..." with text in a column, or on the next line when the
// term is wider than the column.
std::string entries(const std::vector<HelpEntry>& list, size_t column)
{
    std::string out;
    for (const HelpEntry& e : list) {
        std::string line = "  " + e.term;
        if (line.size() + 2 > column) {
            out += line + "\n" + std::string(column, ' ');
        } else {
            out += line + std::string(column - line.size(), ' ');
        }
        out += fill(e.text, column, column);
    }
    return out;
}

std::string man_entries(const std::vector<HelpEntry>& list, bool term_is_code)
{
    std::string out;
    for (const HelpEntry& e : list) {
        out += ".TP\n";
        out += (term_is_code ? ".B " : "") + roff_escape(e.term) + "\n";
        out += roff_escape(e.text) + "\n";
    }
    return out;
}

}  // namespace

const std::vector<HelpEntry>& help_usage()
{
    static const std::vector<HelpEntry> usage = {
        {"connleak [OPTIONS] -p PID [-p PID ...]",
         "attach to running processes and every process under them (unless --no-follow)"},
        {"connleak [OPTIONS] -- COMMAND [ARGS ...]", "launch COMMAND, traced from its first instruction"},
        {"connleak [OPTIONS] --all",
         "every process on the host that uses libpq, now and later, in containers too (never connleak itself)"},
    };
    return usage;
}

const std::vector<HelpEntry>& help_examples()
{
    static const std::vector<HelpEntry> examples = {
        {"connleak -p $(pidof api) --leak-after 60", "watch a running service"},
        {"connleak -p $(pgrep -o gunicorn)", "a gunicorn master and the workers it forked"},
        {"connleak --all --http 127.0.0.1:9899 -q", "the whole host, for Prometheus (see deploy/)"},
        {"connleak --leak-after 0 -- ./batch-job --nightly", "what did the job never close?"},
        {"connleak -d 600 -- gunicorn app:app", "trace a server for ten minutes, then stop it"},
        {"connleak -q -j /run/connleak.json -p 4242 &", "feed a dashboard"},
        {"connleak -j - -p 4242 | jq .tracking_stats", "JSON Lines"},
        {"connleak -q --http 9187 -p 4242", "a dashboard on http://127.0.0.1:9187/, /metrics for Prometheus"},
        {"connleak -p 4242 --server 'host=db user=monitor'", "each connection as the server sees it, those "
                                                             "made before the attach too"},
    };
    return examples;
}

const std::vector<HelpEntry>& help_words()
{
    static const std::vector<HelpEntry> words = {
        {"acquired", "a PGconn handed to the application by PQconnectdb, PQconnectdbParams, PQconnectStart, "
                     "PQconnectStartParams or PQsetdbLogin, counted once however libpq nests its calls. A failed "
                     "connection is acquired too: it still needs PQfinish."},
        {"released", "PQfinish on a handle seen acquired."},
        {"released_untracked",
         "PQfinish on a handle made before connleak attached; it never drives active below zero."},
        {"released_inherited", "PQfinish, in a forked child, of a handle its parent held at fork."},
        {"pings", "PQping/PQpingParams calls (pg_isready): not the application's connections, not acquired."},
        {"resets", "PQreset/PQresetStart calls; they reuse the same handle."},
        {"active", "handles acquired and not yet released. A process that exited holds none."},
        {"leaked_at_exit", "handles a process still held when it exited."},
        {"leaks", "active handles held --leak-after seconds or longer (--leak-after 0: acquired - released). A "
                  "pooled handle: in a transaction (in_transaction, in_error) that long; idle in its pool is "
                  "healthy."},
        {"state", "a live handle as the client sees it, read from libpq's PGconn in the target's memory: "
                  "connecting, idle, in_transaction, in_error, busy or broken; with backend_pid, database and "
                  "user. Read again when it can have changed (traffic or a change on its socket, a PQconnectPoll "
                  "call while connecting; every 30 s as a safety net, less often past 30,000 handles). The "
                  "password is never read."},
        {"pooled", "acquired through a pool's code (psycopg2.pool, SQLAlchemy's pool, psycopg_pool, "
                   "--pool-frame)."},
        {"pool_slots_lost", "pooled handles finished while borrowed: the pool runs one connection short."},
        {"leak_ratio", "leaks / acquired x 100."},
        {"site", "where a handle was acquired: the first frame of its acquiring stack outside libpq and driver "
                 "glue (--site-skip), as function+0xoff (module) file.c:42, or module+0xoffset; for Python, "
                 "the innermost application frame, qualname (path/file.py:42). A pooled handle's leak is "
                 "charged to its last user, the borrower (a row with nothing acquired where the borrower made "
                 "no connection), not to the site where the pool made it."},
        {"leak notice", "one line on stderr the first time a live connection is a leak, and one more if it is "
                        "finished later. Never repeated."},
        {"avg_ms, max_ms", "per site: mean hold time of released handles; longest hold, released or still live."},
        {"db sockets", "sockets to a database server the process really holds, whoever opened them: paired (the "
                       "socket of a live libpq handle), pre-attach (held since before connleak attached), "
                       "untracked (opened outside libpq) and connecting."},
        {"discrepancy", "db sockets - active (tracking_discrepancy): connections libpq tracking misses when "
                        "positive, handles holding no socket when negative. Without --server, the text report "
                        "says once how many database sockets are held since before the attach."},
        {"idle, last user", "per live connection: time since its socket last sent or received a byte, and the "
                            "stack that began its current or latest unit of work (the first send while the "
                            "handle was idle: a pool's borrower, not the pool)."},
        {"last users", "per process, each last user with its live handles, pooled ones, those checked out now "
                       "(pooled and in_transaction, in_error or busy; an idle one is back in its pool) and its "
                       "leaks (a pooled handle's leak is charged to its last user), worst first, at most --top."},
        {"dropped", "acquisitions or processes a full kernel map had no room for; counts are then low by that "
                    "much: raise --max-conns, --max-sites or --max-procs."},
        {"container", "the container a process runs in, from its cgroup: the container ID (docker, containerd, "
                      "CRI-O, podman; 12 digits in text) and the Kubernetes pod UID when the path holds one."},
        {"server state", "with --server, pg_stat_activity's view of each connection (state, backend_start, "
                         "xact_start, state_change, wait_event, query), joined by the client's address and port "
                         "or, over a Unix socket on this host, by the backend's socket. Connections made before "
                         "the attach are listed from it (pre-attach), aged from backend_start, and are leaks "
                         "once that old, or idle in a transaction that long."},
    };
    return words;
}

const std::vector<HelpEntry>& help_exit_status()
{
    static const std::vector<HelpEntry> status = {
        {"0", "done: Ctrl-C, SIGTERM, the end of --duration, or every target exited. With -- COMMAND, the "
              "command's own exit status when it ended by itself; 0 when connleak ended first and stopped it."},
        {"1", "runtime failure: unknown PID, no libpq in the process, missing privileges, a kernel without BTF, "
              "unwritable output."},
        {"2", "usage error."},
    };
    return status;
}

const std::string& help_launched_command()
{
    static const std::string text =
        "When connleak ends before a launched COMMAND (--duration, Ctrl-C, SIGTERM, q in the live view), it "
        "stops the command and every process it started, from the top down: SIGTERM to COMMAND, and to a "
        "process under it once its parent has exited (a gunicorn master stops its own workers; after Ctrl-C at "
        "a terminal they already had SIGINT from it, and get no second signal), then SIGKILL to whatever is "
        "left --kill-after seconds later (default 5). Their exits are in the final report. With --keep-command "
        "the command keeps running and connleak says its PID at exit.";
    return text;
}

std::string help_footer()
{
    // Examples read better with the command on its own line.
    std::string out = "Examples:\n";
    for (const HelpEntry& e : help_examples())
        out += "  " + e.term + "\n      # " + e.text + "\n";
    out += "\nLaunched command:\n  " + fill(help_launched_command(), 2, 2);
    out += "\nWhat the words mean:\n" + entries(help_words(), 22);
    out += "\nExit status:\n" + entries(help_exit_status(), 6);
    out += "\nMore in README.md and man connleak.\n";
    return out;
}

std::string roff_escape(const std::string& text)
{
    std::string out;
    for (char c : text) {
        if (c == '\\')
            out += "\\e";
        else if (c == '-')
            out += "\\-";
        else
            out += c;
    }
    // A line starting with . or ' is a roff request.
    if (!out.empty() && (out[0] == '.' || out[0] == '\''))
        out.insert(0, "\\&");
    return out;
}

std::string man_page(const std::vector<OptionHelp>& options)
{
    std::string out;
    out += ".TH CONNLEAK 1 \"\" \"connleak\" \"User Commands\"\n";
    out += ".nh\n.ad l\n";  // no hyphenated option names, ragged right
    out += ".SH NAME\nconnleak \\- find database connection leaks in running processes (libpq, eBPF)\n";
    out += ".SH SYNOPSIS\n";
    for (const HelpEntry& u : help_usage())
        out += ".B " + roff_escape(u.term) + "\n.br\n";
    out += ".SH DESCRIPTION\n";
    out += "connleak puts eBPF uprobes on libpq in the processes you name, counts every PGconn they make "
           "and finish, per process and per acquiring call site, and prints a leak report each interval.\n";
    out += man_entries(help_usage(), true);
    out += ".SH OPTIONS\n";
    for (const OptionHelp& o : options) {
        out += ".TP\n.B " + roff_escape(o.names);
        if (!o.value.empty())
            out += " \\fI" + roff_escape(o.value) + "\\fR";
        out += "\n" + roff_escape(o.text) + "\n";
    }
    out += ".SH LAUNCHED COMMAND\n" + roff_escape(help_launched_command()) + "\n";
    out += ".SH WHAT THE WORDS MEAN\n" + man_entries(help_words(), true);
    out += ".SH EXIT STATUS\n" + man_entries(help_exit_status(), false);
    out += ".SH EXAMPLES\n";
    for (const HelpEntry& e : help_examples())
        out += ".TP\n.B " + roff_escape(e.term) + "\n" + roff_escape(e.text) + "\n";
    out += ".SH REQUIREMENTS\nroot, or CAP_BPF and CAP_PERFMON, and a kernel with BTF "
           "(/sys/kernel/btf/vmlinux).\n";
    out += ".SH SEE ALSO\nREADME.md of connleak: the JSON snapshot's keys, how it works, its limits.\n";
    return out;
}

}  // namespace connleak
