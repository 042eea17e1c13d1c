// socket_model: which sockets are a database's, how they pair with libpq's
// live handles, and what is said of each. Exact numbers, no kernel.
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "socket_json.h"
#include "socket_model.h"
#include "socket_text.h"

using connleak::build_exit_report;
using connleak::build_socket_report;
using connleak::ConnSocket;
using connleak::DbServers;
using connleak::HandleRef;
using connleak::HeldSocket;
using connleak::is_pg_socket_path;
using connleak::learn_servers;
using connleak::parse_db_host;
using connleak::Peer;
using connleak::ProcessScan;
using connleak::ProcessSocketMemory;
using connleak::ProcessSocketReport;
using connleak::socket_json;
using connleak::socket_text;
using connleak::SocketRecord;
using connleak::SocketState;

namespace {

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kScan = 100 * kSec;  // when the scan began

Peer tcp(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    const uint8_t addr[4] = {a, b, c, d};
    return Peer::inet4(addr, port);
}

Peer local(uint16_t port)
{
    return tcp(127, 0, 0, 1, port);
}

Peer unix_peer(const std::string& path)
{
    return Peer::unix_path(path.data(), path.size());
}

const std::string kPgSock = "/run/postgresql/.s.PGSQL.5432";

DbServers defaults()
{
    DbServers d;
    d.ports = {5432};
    return d;
}

// A process's scan and records, built the way the tracer reads them.
struct World {
    ProcessScan scan;
    std::vector<SocketRecord> records;
    std::vector<HandleRef> handles;
    ProcessSocketMemory mem;
    DbServers rules = defaults();

    World()
    {
        scan.ok = true;
        scan.time_ns = kScan;
    }
    World& held(uint64_t inode, const Peer& peer, SocketState st = SocketState::Live)
    {
        scan.sockets.push_back({inode, peer, st, Peer()});
        return *this;
    }
    // A connect() the kernel saw, `ago` before the scan (negative: after it).
    SocketRecord& record(uint64_t inode, const Peer& peer, uint64_t conn, int64_t ago_s = 10)
    {
        SocketRecord r;
        r.sk = 0xffff000000000000ULL + inode;
        r.tgid = 1;
        r.conn = conn;
        r.inode = inode;
        r.connect_ns = static_cast<uint64_t>(static_cast<int64_t>(kScan) - ago_s * static_cast<int64_t>(kSec));
        r.established_ns = peer.kind() == Peer::Kind::Inet ? r.connect_ns + 1 : 0;
        r.peer = peer;
        records.push_back(r);
        return records.back();
    }
    // A live handle whose connect call began `ago` before the scan.
    World& handle(uint64_t conn, int64_t ago_s = 11)
    {
        handles.push_back({conn, 1, kScan - static_cast<uint64_t>(ago_s) * kSec});
        return *this;
    }
    ProcessSocketReport report() { return build_socket_report(scan, records, handles, rules, mem); }
};

// db_sockets, paired, pre_attach, untracked, connecting, handles_without_socket
std::vector<uint64_t> counts(const ProcessSocketReport& r)
{
    return {r.db_sockets, r.paired, r.pre_attach, r.untracked, r.connecting, r.handles_without_socket};
}

std::string state_of(const ProcessSocketReport& r, uint64_t conn)
{
    auto it = r.conns.find(conn);
    return it == r.conns.end() ? "(missing)" : it->second.state.str() + " " + it->second.peer.str();
}

}  // namespace

TEST_CASE("peers are written the way people read them", "[socket_model]")
{
    CHECK(local(5432).str() == "127.0.0.1:5432");
    const uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CHECK(Peer::inet6(v6, 5432).str() == "[::1]:5432");
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
    CHECK(Peer::inet6(mapped, 6432) == tcp(10, 1, 2, 3, 6432));  // one server, however reached
    CHECK(unix_peer(kPgSock).str() == kPgSock);
    const char abstract[] = "\0pg\0";
    CHECK(Peer::unix_path(abstract, 4).str() == "@pg");
    const char sun_path[108] = "/tmp/.s.PGSQL.5432";  // as the kernel holds it: NUL-padded
    CHECK(Peer::unix_path(sun_path, sizeof(sun_path)).str() == "/tmp/.s.PGSQL.5432");
    CHECK(unix_peer("/tmp/\x1b[2J\xe9.sock").str() == "/tmp/\\x1b[2J\\xe9.sock");  // plain text, valid UTF-8
    CHECK(Peer().str().empty());
}

TEST_CASE("--db-host: an address, with or without a port", "[socket_model]")
{
    CHECK(parse_db_host("10.0.0.5")->str() == "10.0.0.5:0");
    CHECK(parse_db_host("10.0.0.5:6432")->str() == "10.0.0.5:6432");
    CHECK(parse_db_host("::1")->str() == "[::1]:0");
    CHECK(parse_db_host("[::1]")->str() == "[::1]:0");
    CHECK(parse_db_host("[2001:db8::7]:5433")->str() == "[2001:db8::7]:5433");
    CHECK(parse_db_host("[::ffff:10.0.0.5]:5432")->str() == "10.0.0.5:5432");
    for (const char* bad : {"", "db.example.com", "10.0.0.5:", "10.0.0.5:0", "10.0.0.5:70000", "10.0.0.5:x", "[::1",
                            "[::1]5432", "[::1]:", "1.2.3"})
        CHECK_FALSE(parse_db_host(bad));
}

TEST_CASE("PostgreSQL's socket name is .s.PGSQL.<port>", "[socket_model]")
{
    CHECK(is_pg_socket_path(kPgSock));
    CHECK(is_pg_socket_path(".s.PGSQL.6432"));
    CHECK_FALSE(is_pg_socket_path("/run/postgresql/.s.PGSQL."));
    CHECK_FALSE(is_pg_socket_path("/run/postgresql/.s.PGSQL.5432.lock"));
    CHECK_FALSE(is_pg_socket_path("/run/.s.PGSQL.5432/x"));
    CHECK_FALSE(is_pg_socket_path("/var/run/nscd/socket"));
}

TEST_CASE("database servers: ports, hosts, socket paths", "[socket_model]")
{
    DbServers d = defaults();
    d.hosts = {*parse_db_host("10.0.0.5"), *parse_db_host("10.0.0.6:6432")};
    d.paths = {"/run/pgbouncer.sock"};
    CHECK(d.matches(local(5432)));
    CHECK(d.matches(tcp(192, 168, 1, 1, 5432)));
    CHECK_FALSE(d.matches(local(5433)));
    CHECK(d.matches(tcp(10, 0, 0, 5, 1234)));  // any port of that host
    CHECK(d.matches(tcp(10, 0, 0, 6, 6432)));
    CHECK_FALSE(d.matches(tcp(10, 0, 0, 6, 6433)));
    CHECK(d.matches(unix_peer(kPgSock)));
    CHECK(d.matches(unix_peer("/run/pgbouncer.sock")));
    CHECK_FALSE(d.matches(unix_peer("/var/run/nscd/socket")));
    CHECK_FALSE(d.matches(Peer()));
}

TEST_CASE("a live handle's socket is paired, and its server learnt", "[socket_model]")
{
    World w;
    w.rules.ports = {};  // nothing known but what libpq reaches
    w.handle(0xa).record(10, local(6000), 0xa);
    w.held(10, local(6000));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{1, 1, 0, 0, 0, 0});
    CHECK(state_of(r, 0xa) == "open 127.0.0.1:6000");
    CHECK(w.mem.learned.count(local(6000)) == 1);
}

TEST_CASE("sockets held since before the attach are pre_attach, if a database's", "[socket_model]")
{
    World w;
    w.mem.pre_attach = {20, 21, 22};
    w.held(20, local(5432)).held(21, local(5432)).held(22, local(8080));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{2, 0, 2, 0, 0, 0});
    CHECK(r.pre_attach_peers == std::map<std::string, uint64_t>{{"127.0.0.1:5432", 2}});
}

TEST_CASE("a server libpq reaches makes the old sockets to it count", "[socket_model]")
{
    World w;
    w.rules.ports = {};
    w.mem.pre_attach = {20, 21};
    w.held(20, local(6000)).held(21, local(6000));
    CHECK(counts(w.report()) == std::vector<uint64_t>{0, 0, 0, 0, 0, 0});
    w.handle(0xa).record(10, local(6000), 0xa);
    w.held(10, local(6000));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{3, 1, 2, 0, 0, 0});
    // Learnt for good: it counts after the handle is gone too.
    w.handles.clear();
    w.records.clear();
    w.scan.sockets.pop_back();
    CHECK(counts(w.report()) == std::vector<uint64_t>{2, 0, 2, 0, 0, 0});
}

TEST_CASE("servers are learnt from every libpq socket of any process, handle live or not", "[socket_model]")
{
    DbServers servers;
    std::vector<SocketRecord> records;
    auto rec = [&](uint32_t tgid, const Peer& peer, uint64_t conn, bool established) {
        SocketRecord r;
        r.tgid = tgid;
        r.conn = conn;
        r.connect_ns = kSec;
        r.established_ns = established ? 2 * kSec : 0;
        r.closed_ns = 3 * kSec;  // finished before anyone looked
        r.peer = peer;
        records.push_back(r);
    };
    rec(7, local(6001), 0xa, true);
    rec(8, local(6001), 0xb, true);          // the same server, another process
    rec(7, local(6002), 0xc, false);         // refused: not a server
    rec(7, local(6003), 0, true);            // outside libpq: not said to be one
    rec(7, unix_peer(kPgSock), 0xd, false);  // Unix: named by its path already
    CHECK(learn_servers(records, servers) == 1);
    CHECK(servers.learned == std::set<Peer>{local(6001)});
    CHECK(learn_servers(records, servers) == 0);
    CHECK(servers.matches(local(6001)));
    CHECK_FALSE(servers.matches(local(6002)));
    CHECK_FALSE(servers.matches(tcp(10, 0, 0, 1, 6001)));

    // Another process's pre-attach (or inherited) socket to it counts.
    World w;
    w.rules.ports = {};
    w.rules.learned = servers.learned;
    w.mem.pre_attach = {20};
    w.held(20, local(6001)).held(21, local(6001));
    CHECK(counts(w.report()) == std::vector<uint64_t>{2, 0, 1, 1, 0, 0});
}

TEST_CASE("sockets opened outside libpq are untracked, with their peers", "[socket_model]")
{
    World w;
    w.handle(0xa).record(10, local(5432), 0xa);
    w.held(10, local(5432));
    w.record(11, local(5432), 0);  // another driver, seen connecting
    w.held(11, local(5432));
    w.held(12, unix_peer(kPgSock));  // no record: inherited, or passed over a Unix socket
    w.record(13, local(80), 0);      // not a database
    w.held(13, local(80));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{3, 1, 0, 2, 0, 0});
    CHECK(r.untracked_peers == std::map<std::string, uint64_t>{{"127.0.0.1:5432", 1}, {kPgSock, 1}});
}

TEST_CASE("libpq's sockets without a live handle are connecting; its lookups are not a database's", "[socket_model]")
{
    World w;
    w.record(10, local(5432), 0xb, 0);  // the connect call has not returned yet
    w.held(10, local(5432));
    w.record(11, unix_peer("/var/run/nscd/socket"), 0xb, 0);  // getaddrinfo inside PQconnectPoll
    w.held(11, unix_peer("/var/run/nscd/socket"));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{1, 0, 0, 0, 1, 0});
}

TEST_CASE("a handle's socket is the last one its connect opened", "[socket_model]")
{
    World w;
    w.handle(0xa, 30);
    // nscd lookup, then ::1 refused, then 127.0.0.1; a later PQreset replaced it.
    w.record(9, unix_peer("/var/run/nscd/socket"), 0xa, 29);
    SocketRecord& refused = w.record(10, local(5432), 0xa, 28);
    refused.established_ns = 0;
    refused.closed_ns = refused.connect_ns + 1;
    w.record(11, local(5432), 0xa, 27).closed_ns = kScan - 5 * kSec;
    w.record(12, local(5432), 0xa, 4);
    w.held(12, local(5432));
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{1, 1, 0, 0, 0, 0});
    CHECK(state_of(r, 0xa) == "open 127.0.0.1:5432");
}

TEST_CASE("a record older than the handle is not its socket (a reused PGconn address)", "[socket_model]")
{
    World w;
    w.handle(0xa, 5);
    w.record(10, local(5432), 0xa, 50).closed_ns = kScan - 40 * kSec;
    auto r = w.report();
    CHECK(state_of(r, 0xa) == "none ");
    CHECK(counts(r) == std::vector<uint64_t>{0, 0, 0, 0, 0, 1});
}

TEST_CASE("handles without their socket: peer closed, closed, none", "[socket_model]")
{
    World w;
    w.handle(0xa).record(10, local(5432), 0xa);
    w.held(10, local(5432), SocketState::PeerClosed);  // server went away (CLOSE_WAIT)
    w.handle(0xb).record(11, unix_peer(kPgSock), 0xb);
    w.held(11, unix_peer(kPgSock), SocketState::PeerClosed);  // Unix: the peer shut it down
    w.handle(0xc).record(12, local(5432), 0xc);               // not held at the scan: libpq closed it
    w.handle(0xd);                                            // no socket ever (name lookup failed)
    SocketRecord& reset = w.record(13, local(5432), 0xe);     // TCP reset seen by the hook
    w.handle(0xe).held(13, local(5432));
    reset.closed_ns = kScan + 1;
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{0, 0, 0, 0, 0, 5});
    CHECK(state_of(r, 0xa) == "peer_closed 127.0.0.1:5432");
    CHECK(state_of(r, 0xb) == "peer_closed " + kPgSock);
    CHECK(state_of(r, 0xc) == "closed 127.0.0.1:5432");
    CHECK(state_of(r, 0xd) == "none ");
    CHECK(state_of(r, 0xe) == "closed 127.0.0.1:5432");
}

TEST_CASE("a socket connected after the scan began is known by its record", "[socket_model]")
{
    World w;
    w.handle(0xa, 1).record(10, local(5432), 0xa, -1);
    w.record(11, unix_peer(kPgSock), 0, -1);
    SocketRecord& gone = w.record(12, local(5432), 0, -1);
    gone.closed_ns = gone.connect_ns + 1;
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{2, 1, 0, 1, 0, 0});
    CHECK(state_of(r, 0xa) == "open 127.0.0.1:5432");
}

TEST_CASE("without a scan (the process is going), records alone tell", "[socket_model]")
{
    World w;
    w.scan.ok = false;
    w.handle(0xa).record(10, local(5432), 0xa);
    w.record(11, local(5432), 0).peer_closed_ns = kScan;
    auto r = w.report();
    CHECK(counts(r) == std::vector<uint64_t>{1, 1, 0, 0, 0, 0});
}

TEST_CASE("pre-attach sockets are forgotten once closed", "[socket_model]")
{
    World w;
    w.mem.pre_attach = {20, 21};
    w.held(20, local(5432));
    w.report();
    CHECK(w.mem.pre_attach == std::set<uint64_t>{20});
    CHECK(w.mem.last_scan.sockets.size() == 1);
}

TEST_CASE("at exit: the live database sockets held are closed by the kernel", "[socket_model]")
{
    World w;
    w.mem.pre_attach = {20};
    w.held(20, local(5432));                                              // pre-attach, held to the end
    w.handle(0xa).record(10, local(5432), 0xa).closed_ns = kScan + kSec;  // closed before the exit
    w.held(10, local(5432));
    w.record(11, unix_peer(kPgSock), 0xb, -2);                         // connected after the last scan
    w.record(12, local(5432), 0xc, -2).peer_closed_ns = kScan + kSec;  // the server left first
    w.record(13, local(80), 0, -2);                                    // not a database
    w.report();
    const uint64_t exited = kScan + 5 * kSec;

    SECTION("with the fd table read at exit")
    {
        std::set<uint64_t> held = {20, 11, 12, 13, 99 /* unknown */};
        CHECK(build_exit_report(exited, w.records, w.rules, w.mem, &held).closed_at_exit == 2);
        std::set<uint64_t> none;
        CHECK(build_exit_report(exited, w.records, w.rules, w.mem, &none).closed_at_exit == 0);
    }
    SECTION("without it: the last scan and the records")
    {
        auto r = build_exit_report(exited, w.records, w.rules, w.mem, nullptr);
        CHECK(r.closed_at_exit == 2);
        CHECK(r.db_sockets == 0);
        CHECK(r.tracked);
    }
}

TEST_CASE("each handle's socket says its inode, and its local address:port when a scan saw it held", "[socket_model]")
{
    World w;
    Peer tcp_held = local(5432);
    w.scan.sockets.push_back({10, tcp_held, SocketState::Live, tcp(127, 0, 0, 1, 40112)});
    w.record(10, tcp_held, 0x10);
    w.handle(0x10);
    w.held(11, unix_peer(kPgSock));
    w.record(11, unix_peer(kPgSock), 0x20);
    w.handle(0x20);
    w.record(12, local(5432), 0x30, -1);  // connected after the scan began: not in it
    w.handle(0x30);
    w.record(13, local(5432), 0x40);  // closed before the scan
    w.handle(0x40);
    w.handle(0x50);  // no socket at all
    ProcessSocketReport r = w.report();
    auto sock = [&](uint64_t conn) { return r.conns.at(conn); };
    CHECK(sock(0x10).local.str() == "127.0.0.1:40112");
    CHECK(sock(0x10).inode == 10);
    CHECK(sock(0x10).state == "open");
    CHECK(sock(0x20).local.str().empty());  // Unix: no address:port
    CHECK(sock(0x20).inode == 11);
    CHECK(sock(0x30).local.str().empty());  // open, but no scan saw it
    CHECK(sock(0x30).inode == 12);
    CHECK(sock(0x30).state == "open");
    CHECK(sock(0x40).local.str().empty());
    CHECK(sock(0x40).inode == 13);
    CHECK(sock(0x40).state == "closed");
    CHECK(sock(0x50).local.str().empty());
    CHECK(sock(0x50).inode == 0);
    CHECK(sock(0x50).state == "none");
}

TEST_CASE("JSON and text say the same numbers", "[socket_model]")
{
    ProcessSocketReport r;
    r.tracked = true;
    r.db_sockets = 4;
    r.paired = 1;
    r.pre_attach = 2;
    r.untracked = 1;
    r.tracking_discrepancy = 2;
    r.handles_without_socket = 1;
    r.pre_attach_peers = {{"127.0.0.1:5432", 2}};
    r.untracked_peers = {{kPgSock, 1}};
    r.conns[0x10] = {"127.0.0.1:5432", "open", Peer(), 0};
    r.conns[0x20] = {"127.0.0.1:5432", "peer_closed", Peer(), 0};
    auto j = socket_json(r);
    CHECK(j.dump() == "{\"paired\":1,\"pre_attach\":2,\"untracked\":1,\"connecting\":0,\"handles_without_socket\":1,"
                      "\"closed_at_exit\":0,\"dropped\":0,\"pre_attach_peers\":{\"127.0.0.1:5432\":2},"
                      "\"untracked_peers\":{\"/run/postgresql/.s.PGSQL.5432\":1}}");
    std::string text = socket_text(r, false);
    CHECK(text == "  db sockets 4  discrepancy +2  (paired 1, pre-attach 2: 127.0.0.1:5432 x2, untracked 1: "
                  "/run/postgresql/.s.PGSQL.5432 x1)\n"
                  "  handles without an open socket: 0x20 (peer_closed 127.0.0.1:5432)\n");
    r.closed_at_exit = 3;
    CHECK(socket_text(r, true) == "  db sockets 0 (3 closed at exit)\n");
    CHECK(socket_text(ProcessSocketReport{}, false).empty());
}

TEST_CASE("a process's JSON gets its socket keys where the design puts them", "[socket_model]")
{
    using json = nlohmann::ordered_json;
    json proc = {{"pid", 7},
                 {"active", 2},
                 {"dropped", 0},
                 {"top_connection_users", json::array()},
                 {"connections", {{{"conn", "0x10"}, {"tid", 7}}, {{"conn", "0x20"}, {"tid", 7}}}}};
    ProcessSocketReport r;
    CHECK(connleak::with_sockets(proc, r) == proc);  // not tracked: untouched
    r.tracked = true;
    r.db_sockets = 1;
    r.paired = 1;
    r.handles_without_socket = 1;
    r.tracking_discrepancy = -1;
    r.conns[0x10] = {"127.0.0.1:5432", "open", Peer(), 0};
    r.conns[0x20] = {"", "none", Peer(), 0};
    json out = connleak::with_sockets(proc, r);
    std::vector<std::string> keys;
    for (auto it = out.begin(); it != out.end(); ++it)
        keys.push_back(it.key());
    CHECK(keys == std::vector<std::string>{"pid", "active", "dropped", "db_sockets", "tracking_discrepancy", "sockets",
                                           "top_connection_users", "connections"});
    CHECK(out["tracking_discrepancy"] == -1);
    // Each connection's socket keys come from its ConnReport (the model's join), not from here.
    CHECK(out["connections"] == proc["connections"]);
}

TEST_CASE("an exit report waits for the kernel's walk of the fd table, a bounded time", "[socket_model]")
{
    using connleak::exit_walk_pending;
    using connleak::kExitWalkWaitNs;
    const uint64_t exited = 5'000'000'000ULL;
    CHECK(exit_walk_pending(false, exited, exited));                          // between the two programs
    CHECK(exit_walk_pending(false, exited, exited + kExitWalkWaitNs - 1));    // still awaited
    CHECK_FALSE(exit_walk_pending(false, exited, exited + kExitWalkWaitNs));  // never came: report without it
    CHECK_FALSE(exit_walk_pending(true, exited, exited));                     // walked: final now
    CHECK_FALSE(exit_walk_pending(true, exited, exited + 10 * kExitWalkWaitNs));
}
