#include "pg_activity_reader.h"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <poll.h>
#include <set>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <utility>

#include "clock.h"
#include "held_endpoints.h"
#include "libpq_api.h"
#include "proc_sockets.h"

namespace connleak {
namespace {

// libpq's functions. Loaded before anything here runs: every --server DSN
// goes through server_label() first, which fails when libpq cannot be loaded.
const LibpqApi& pq()
{
    return *libpq_api().value();
}

// Parsed conninfo, freed by RAII.
struct ConninfoOptions {
    PQconninfoOption* opts = nullptr;
    ~ConninfoOptions() { pq().PQconninfoFree(opts); }
    std::string get(const char* keyword) const
    {
        for (PQconninfoOption* o = opts; o && o->keyword; o++)
            if (std::strcmp(o->keyword, keyword) == 0 && o->val)
                return o->val;
        return "";
    }
};

// First line of a libpq message, without its trailing newline.
std::string first_line(const char* text)
{
    std::string s = text ? text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    for (char& c : s)
        if (c == '\n')
            c = ' ';
    return s;
}

void ignore_notice(void*, const char*) {}

const char* kTimestamp = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

// The one query of each interval: every client backend but our own, with
// the ages computed by the server's clock.
std::string activity_query(const ActivityReaderOptions& o)
{
    auto ts = [](const char* col) {
        return std::string("to_char(") + col + " AT TIME ZONE 'UTC', " + kTimestamp + ")";
    };
    auto age = [](const char* col) {
        return std::string("(extract(epoch FROM clock_timestamp() - ") + col + ") * 1000)::float8";
    };
    return "SELECT pid, state, " + ts("backend_start") + ", " + ts("xact_start") + ", " + ts("state_change") +
           ", wait_event, " + (o.queries ? "left(query, " + std::to_string(o.query_max) + ")" : "NULL::text") +
           ", host(client_addr), client_port, " + age("backend_start") + ", " + age("xact_start") + ", " +
           age("state_change") +
           " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";
}

std::optional<std::string> text_of(const PGresult* r, int row, int col)
{
    if (pq().PQgetisnull(r, row, col))
        return std::nullopt;
    return std::string(pq().PQgetvalue(r, row, col));
}

double number_of(const PGresult* r, int row, int col)
{
    return pq().PQgetisnull(r, row, col) ? -1 : std::strtod(pq().PQgetvalue(r, row, col), nullptr);
}

Peer client_of(const PGresult* r, int row)
{
    if (pq().PQgetisnull(r, row, 7) || pq().PQgetisnull(r, row, 8))
        return {};
    const std::string addr = pq().PQgetvalue(r, row, 7);
    const int port = std::atoi(pq().PQgetvalue(r, row, 8));
    if (port <= 0 || port > 65535)
        return {};
    auto p = parse_db_host(addr.find(':') != std::string::npos ? "[" + addr + "]:" + std::to_string(port)
                                                               : addr + ":" + std::to_string(port));
    return p ? *p : Peer{};
}

// The socket inodes of a backend of a server on this host ({} for a pid
// that is not a PostgreSQL process here: a server on another host).
std::set<uint64_t> backend_sockets(uint32_t pid)
{
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (!std::getline(comm, name) || name != "postgres")
        return {};
    auto inodes = read_socket_inodes(pid);
    return inodes ? inodes.value() : std::set<uint64_t>{};
}

}  // namespace

Result<std::string> server_label(const std::string& dsn)
{
    if (auto api = libpq_api(); !api)
        return api.error();
    char* err = nullptr;
    ConninfoOptions c;
    c.opts = pq().PQconninfoParse(dsn.c_str(), &err);
    if (!c.opts) {
        std::string msg = err ? first_line(err) : "out of memory";
        pq().PQfreemem(err);
        // libpq quotes the part it could not read, which may be a password:
        // what it quotes is left out.
        std::string said;
        bool quoted = false;
        for (char ch : msg) {
            if (ch == '"') {
                said += quoted ? "\"" : "\"...";
                quoted = !quoted;
            } else if (!quoted) {
                said += ch;
            }
        }
        return Error{"not a valid connection string or URI (" + said + ")"};
    }
    std::string host = c.get("host");
    if (host.empty())
        host = c.get("hostaddr");
    if (host.empty() && getenv("PGHOST"))
        host = getenv("PGHOST");
    if (host.empty())
        host = "local socket";
    std::string port = c.get("port");
    if (port.empty())
        port = getenv("PGPORT") ? getenv("PGPORT") : "5432";
    return host + ":" + port;
}

struct ActivityReader::Server {
    std::string dsn;
    std::string label;
    std::vector<std::string> secrets;  // cut out of every message
    PGconn* conn = nullptr;
    enum class Phase { never, connected, failing } phase = Phase::never;
    std::string last_error;
    bool privilege_said = false;
    // Unix-socket backends: pid -> (backend_start, socket inodes of its fd table).
    std::map<uint32_t, std::pair<std::string, std::set<uint64_t>>> backend_fds;
    ~Server() { pq().PQfinish(conn); }

    std::string scrub(std::string s) const
    {
        for (const std::string& secret : secrets)
            for (size_t at; !secret.empty() && (at = s.find(secret)) != std::string::npos;)
                s.replace(at, secret.size(), "***");
        return s;
    }
};

ActivityReader::ActivityReader(ActivityReaderOptions opts) : opts_(std::move(opts))
{
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (const std::string& dsn : opts_.dsns) {
        auto s = std::make_unique<Server>();
        s->dsn = dsn;
        auto label = server_label(dsn);
        s->label = label ? label.value() : "?";
        char* err = nullptr;
        ConninfoOptions c;
        c.opts = pq().PQconninfoParse(dsn.c_str(), &err);
        pq().PQfreemem(err);
        if (std::string pw = c.get("password"); !pw.empty())
            s->secrets.push_back(pw);
        if (const char* pw = getenv("PGPASSWORD"); pw && *pw)
            s->secrets.push_back(pw);
        ServerRead r;
        r.server = s->label;
        latest_.push_back(r);
        servers_.push_back(std::move(s));
    }
}

ActivityReader::~ActivityReader()
{
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (stop_fd_ >= 0) {
        uint64_t one = 1;
        (void)!write(stop_fd_, &one, sizeof(one));
    }
    if (worker_.joinable())
        worker_.join();
    servers_.clear();  // PQfinish, before the eventfd goes
    if (stop_fd_ >= 0)
        close(stop_fd_);
}

void ActivityReader::start()
{
    if (!servers_.empty() && !worker_.joinable())
        worker_ = std::thread([this] { run(); });
}

std::vector<ServerRead> ActivityReader::latest() const
{
    std::lock_guard<std::mutex> lock(mu_);
    return latest_;
}

std::vector<std::string> ActivityReader::take_messages()
{
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(messages_, {});
}

void ActivityReader::set_pids(std::vector<uint32_t> pids)
{
    std::lock_guard<std::mutex> lock(mu_);
    pids_ = std::move(pids);
}

std::map<uint32_t, std::vector<HeldEndpoint>> ActivityReader::latest_held() const
{
    std::lock_guard<std::mutex> lock(mu_);
    return held_;
}

ActivityReader::Cost ActivityReader::cost() const
{
    std::lock_guard<std::mutex> lock(mu_);
    return cost_;
}

void ActivityReader::say(const std::string& message)
{
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(message);
}

bool ActivityReader::wait_stop(double seconds)
{
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stop_; });
}

namespace {

// Waits for the socket (or the stop eventfd) until the deadline. 1: ready,
// 0: deadline passed, -1: stop asked.
int wait_socket(int sock, short events, int stop_fd, uint64_t deadline_ns)
{
    for (;;) {
        const uint64_t now = monotonic_ns();
        if (now >= deadline_ns)
            return 0;
        pollfd fds[2] = {{sock, events, 0}, {stop_fd, POLLIN, 0}};
        const int n = poll(fds, 2, static_cast<int>((deadline_ns - now) / 1000000 + 1));
        if (n < 0 && errno == EINTR)
            continue;
        if (fds[1].revents)
            return -1;
        if (n > 0)
            return 1;
    }
}

// Connects without blocking past the deadline. "" or why not.
std::string connect_server(PGconn*& out, const std::string& dsn, int stop_fd, uint64_t deadline_ns)
{
    const char* keys[] = {"dbname", "fallback_application_name", nullptr};
    const char* vals[] = {dsn.c_str(), "connleak", nullptr};
    PGconn* c = pq().PQconnectStartParams(keys, vals, 1);
    if (!c)
        return "out of memory";
    pq().PQsetNoticeProcessor(c, ignore_notice, nullptr);  // server warnings are not connleak's output
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    std::string err;
    while (pq().PQstatus(c) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        const int w =
            wait_socket(pq().PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, stop_fd, deadline_ns);
        if (w <= 0) {
            err = w == 0 ? "no answer within the timeout" : "stopped";
            break;
        }
        st = pq().PQconnectPoll(c);
    }
    if (err.empty() && (pq().PQstatus(c) != CONNECTION_OK))
        err = first_line(pq().PQerrorMessage(c));
    if (!err.empty()) {
        pq().PQfinish(c);
        return err.empty() ? "cannot connect" : err;
    }
    out = c;
    return "";
}

// Runs one query to its end without blocking past the deadline.
// Returns the last result (owned by the caller) or null with err set.
PGresult* run_query(PGconn* c, const std::string& sql, int stop_fd, uint64_t deadline_ns, std::string& err)
{
    if (!pq().PQsendQuery(c, sql.c_str())) {
        err = first_line(pq().PQerrorMessage(c));
        return nullptr;
    }
    while (pq().PQisBusy(c)) {
        const int w = wait_socket(pq().PQsocket(c), POLLIN, stop_fd, deadline_ns);
        if (w <= 0) {
            err = w == 0 ? "no answer within the timeout" : "stopped";
            return nullptr;
        }
        if (!pq().PQconsumeInput(c)) {
            err = first_line(pq().PQerrorMessage(c));
            return nullptr;
        }
    }
    PGresult* last = nullptr;
    while (PGresult* r = pq().PQgetResult(c)) {
        pq().PQclear(last);
        last = r;
    }
    if (!last || (pq().PQresultStatus(last) != PGRES_TUPLES_OK && pq().PQresultStatus(last) != PGRES_COMMAND_OK)) {
        err = last ? first_line(pq().PQresultErrorMessage(last)) : first_line(pq().PQerrorMessage(c));
        pq().PQclear(last);
        return nullptr;
    }
    return last;
}

}  // namespace

void ActivityReader::run()
{
    const std::string sql = activity_query(opts_);
    const uint64_t timeout_ns = static_cast<uint64_t>(opts_.timeout_s * 1e9);
    for (;;) {
        for (size_t i = 0; i < servers_.size(); i++) {
            Server& s = *servers_[i];
            ServerRead read;
            read.server = s.label;
            std::string err;
            const bool was_connected = s.conn != nullptr;
            if (!s.conn) {
                err = connect_server(s.conn, s.dsn, stop_fd_, monotonic_ns() + timeout_ns);
                if (err.empty()) {
                    // Once per connection: the server ends a query that runs too
                    // long, and whether this role sees every session.
                    std::string setup_err;
                    PGresult* r = run_query(s.conn,
                                            "SET statement_timeout = " + std::to_string(timeout_ns / 1000000) +
                                                "; SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname "
                                                "= current_user) OR pg_has_role(current_user, 'pg_read_all_stats', "
                                                "'MEMBER')",
                                            stop_fd_, monotonic_ns() + timeout_ns, setup_err);
                    if (!r) {
                        err = setup_err;
                        pq().PQfinish(s.conn);
                        s.conn = nullptr;
                    } else {
                        const bool sees_all = pq().PQntuples(r) == 1 && std::strcmp(pq().PQgetvalue(r, 0, 1), "t") == 0;
                        if (!sees_all && !s.privilege_said) {
                            s.privilege_said = true;
                            say("--server " + s.label + ": role \"" + pq().PQgetvalue(r, 0, 0) +
                                "\" cannot see other users' sessions (grant it pg_read_all_stats, or use a "
                                "superuser): their connections have no server state");
                        }
                        pq().PQclear(r);
                        if (s.phase == Server::Phase::failing)
                            say("--server " + s.label + ": connected again, reading pg_stat_activity");
                        s.phase = Server::Phase::connected;
                    }
                }
            }
            uint64_t query_ns = 0, scan_ns = 0;
            if (s.conn) {
                const uint64_t sent = monotonic_ns();
                PGresult* r = run_query(s.conn, sql, stop_fd_, sent + timeout_ns, err);
                read.read_ns = monotonic_ns();
                query_ns = read.read_ns - sent;
                if (r) {
                    read.ok = true;
                    std::map<uint32_t, std::pair<std::string, std::set<uint64_t>>> fresh;
                    for (int row = 0; row < pq().PQntuples(r); row++) {
                        ServerSession ss;
                        ss.backend_pid = static_cast<uint32_t>(std::strtoul(pq().PQgetvalue(r, row, 0), nullptr, 10));
                        ss.state = text_of(r, row, 1);
                        ss.backend_start = text_of(r, row, 2);
                        ss.xact_start = text_of(r, row, 3);
                        ss.state_change = text_of(r, row, 4);
                        ss.wait_event = text_of(r, row, 5);
                        ss.query = text_of(r, row, 6);
                        if (!ss.state && ss.query && *ss.query == "<insufficient privilege>")
                            ss.query.reset();
                        ss.client = client_of(r, row);
                        ss.backend_age_ms = number_of(r, row, 9);
                        ss.xact_age_ms = number_of(r, row, 10);
                        ss.state_age_ms = number_of(r, row, 11);
                        // A Unix-socket client is found through its peer: the backend's own socket.
                        // (client_port -1; NULL when the role may not see it.)
                        if (!pq().PQgetisnull(r, row, 8) && std::strcmp(pq().PQgetvalue(r, row, 8), "-1") == 0) {
                            // A backend keeps its client's socket for life: its fd
                            // table is read once (per pid and start).
                            auto& known = fresh[ss.backend_pid];
                            auto old = s.backend_fds.find(ss.backend_pid);
                            if (old != s.backend_fds.end() && old->second.first == ss.backend_start.value_or("")) {
                                known = std::move(old->second);
                            } else {
                                const uint64_t t0 = monotonic_ns();
                                known = {ss.backend_start.value_or(""), backend_sockets(ss.backend_pid)};
                                scan_ns += monotonic_ns() - t0;
                            }
                            for (uint64_t inode : known.second)
                                read.backend_by_socket[inode] = ss.backend_pid;
                            if (known.second.empty())  // unreadable (or not here): asked again next time
                                fresh.erase(ss.backend_pid);
                        }
                        read.sessions.push_back(std::move(ss));
                    }
                    pq().PQclear(r);
                    s.backend_fds = std::move(fresh);  // backends gone are forgotten
                } else {
                    // Lost (a restart, a terminated backend) or too slow: a new
                    // connection next interval.
                    pq().PQfinish(s.conn);
                    s.conn = nullptr;
                }
            }
            if (!read.ok && err != "stopped") {
                if (s.phase != Server::Phase::failing || err != s.last_error) {
                    if (was_connected || s.phase == Server::Phase::connected)
                        say("--server " + s.label + ": connection lost (" + s.scrub(err) +
                            "); reconnecting each interval, counting goes on");
                    else if (s.phase != Server::Phase::failing)
                        say("--server " + s.label + ": cannot connect (" + s.scrub(err) +
                            "); retrying each interval, counting goes on");
                }
                s.phase = Server::Phase::failing;
                s.last_error = err;
            }
            std::lock_guard<std::mutex> lock(mu_);
            if (stop_)
                return;
            if (read.ok) {
                cost_.reads++;
                cost_.rows += read.sessions.size();
                cost_.query_ns += query_ns;
                cost_.scan_ns += scan_ns;
            }
            timespec cpu;
            if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
                cost_.cpu_ns = static_cast<uint64_t>(cpu.tv_sec) * 1000000000ull + static_cast<uint64_t>(cpu.tv_nsec);
            latest_[i] = std::move(read);
        }
        // The traced processes' sockets, for the join (the tables of each
        // network namespace read once).
        std::vector<uint32_t> pids;
        {
            std::lock_guard<std::mutex> lock(mu_);
            pids = pids_;
        }
        const uint64_t t0 = monotonic_ns();
        std::map<uint32_t, std::vector<HeldEndpoint>> held;
        EndpointScanner scanner;
        for (uint32_t pid : pids)
            held[pid] = scanner.scan(pid);
        {
            std::lock_guard<std::mutex> lock(mu_);
            held_ = std::move(held);
            cost_.held_ns += monotonic_ns() - t0;
            cost_.rounds++;
        }
        if (wait_stop(opts_.interval_s))
            return;
    }
}

}  // namespace connleak
