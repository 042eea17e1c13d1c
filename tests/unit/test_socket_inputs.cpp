// socket_inputs: the socket tracer hands out a process's last socket
// report while this digest of what it was built from stays the same, so
// every input build_socket_report reads must move it, and nothing else.
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <vector>

#include "socket_inputs.h"
#include "socket_model.h"

using connleak::build_socket_report;
using connleak::DbServers;
using connleak::HandleRef;
using connleak::HeldSocket;
using connleak::Peer;
using connleak::ProcessScan;
using connleak::ProcessSocketMemory;
using connleak::ProcessSocketReport;
using connleak::socket_inputs_digest;
using connleak::SocketRecord;
using connleak::SocketState;

namespace {

constexpr uint64_t kSec = 1'000'000'000;

Peer server()
{
    const uint8_t addr[4] = {127, 0, 0, 1};
    return Peer::inet4(addr, 5432);
}

struct Inputs {
    std::vector<SocketRecord> records;
    std::vector<HandleRef> handles;
    uint64_t scan_version = 7;
    size_t known_servers = 1;
    ProcessSocketMemory mem;

    uint64_t digest() const { return socket_inputs_digest(records, handles, scan_version, known_servers, mem); }
};

// Two handles, each with its socket: one open, one its server closed.
Inputs two_handles()
{
    Inputs in;
    for (uint64_t i = 0; i < 2; i++) {
        SocketRecord r;
        r.sk = 0x1000 + i;
        r.tgid = 42;
        r.conn = 0xc0 + i;
        r.inode = 500 + i;
        r.connect_ns = 10 * kSec + i;
        r.established_ns = 11 * kSec;
        r.peer = server();
        in.records.push_back(r);
        in.handles.push_back({r.conn, 42, 9 * kSec});
    }
    in.records[1].peer_closed_ns = 12 * kSec;
    return in;
}

std::string conn_states(const ProcessSocketReport& rep)
{
    std::string out;
    for (const auto& [conn, s] : rep.conns)
        out += std::to_string(conn) + "=" + s.state.str() + "," + s.peer.str() + "," + std::to_string(s.last_io_ns) + ";";
    return out;
}

}  // namespace

TEST_CASE("socket inputs: the same inputs give the same digest")
{
    REQUIRE(two_handles().digest() == two_handles().digest());
}

TEST_CASE("socket inputs: every field the report reads moves the digest")
{
    const uint64_t base = two_handles().digest();
    const std::vector<std::pair<const char*, std::function<void(Inputs&)>>> changes = {
        {"closed", [](Inputs& in) { in.records[0].closed_ns = 13 * kSec; }},
        {"peer closed", [](Inputs& in) { in.records[0].peer_closed_ns = 13 * kSec; }},
        {"established", [](Inputs& in) { in.records[0].established_ns = 0; }},
        {"traffic time", [](Inputs& in) { in.records[0].last_io_ns = 14 * kSec; }},
        {"traffic seen", [](Inputs& in) { in.records[0].traffic = true; }},
        {"unit of work", [](Inputs& in) { in.records[0].use_ns = 14 * kSec; }},
        {"its thread", [](Inputs& in) { in.records[0].use_tid = 43; }},
        {"the handle", [](Inputs& in) { in.records[0].conn = 0xd0; }},
        {"the inode", [](Inputs& in) { in.records[0].inode = 600; }},
        {"connected again", [](Inputs& in) { in.records[0].connect_ns = 15 * kSec; }},
        {"a record more", [](Inputs& in) { in.records.push_back(in.records[0]); }},
        {"a record less", [](Inputs& in) { in.records.pop_back(); }},
        {"a handle more",
         [](Inputs& in) {
             in.handles.push_back({0xe0, 42, 9 * kSec});
         }},
        {"a handle less", [](Inputs& in) { in.handles.pop_back(); }},
        {"a handle's connect", [](Inputs& in) { in.handles[0].start_ns = 16 * kSec; }},
        {"a handle's thread", [](Inputs& in) { in.handles[0].tid = 44; }},
        {"another fd table read", [](Inputs& in) { in.scan_version++; }},
        {"a server learned", [](Inputs& in) { in.known_servers++; }},
        {"a server this process reached", [](Inputs& in) { in.mem.learned.insert(server()); }},
        {"a pre-attach socket gone", [](Inputs& in) { in.mem.pre_attach.insert(77); }},
    };
    for (const auto& [what, change] : changes) {
        Inputs in = two_handles();
        change(in);
        INFO(what);
        CHECK(in.digest() != base);
    }
}

TEST_CASE("socket inputs: the records' part kept aside gives the same digest")
{
    // The tracer keeps socket_records_inputs per process while its records
    // and their traffic stay the same: the two parts must be the whole.
    auto parts = [](const Inputs& in) {
        return connleak::socket_inputs_of(connleak::socket_records_inputs(in.records), in.handles, in.scan_version,
                                          in.known_servers, in.mem);
    };
    Inputs in = two_handles();
    CHECK(parts(in) == in.digest());
    const uint64_t records = connleak::socket_records_inputs(in.records);
    in.records[1].last_io_ns = 14 * kSec;  // traffic: the records' part moves
    CHECK(connleak::socket_records_inputs(in.records) != records);
    CHECK(parts(in) == in.digest());
    in.handles.pop_back();  // a handle finished: only the handles' part moves
    CHECK(connleak::socket_records_inputs(in.records) != records);
    CHECK(parts(in) == in.digest());
    in.records.clear();
    in.handles.clear();
    CHECK(parts(in) == in.digest());
}

TEST_CASE("socket inputs: a later copy of the same scan builds the same report")
{
    // The scan's time is not in the digest: records read before the scan
    // read the same against the scan used again at a later interval.
    Inputs in = two_handles();
    ProcessScan scan;
    scan.ok = true;
    scan.time_ns = 20 * kSec;
    scan.sockets.push_back({500, server(), SocketState::Live, Peer()});
    scan.sockets.push_back({501, server(), SocketState::PeerClosed, Peer()});
    DbServers rules;
    rules.ports.push_back(5432);
    ProcessSocketMemory mem_a, mem_b;
    const ProcessSocketReport first = build_socket_report(scan, in.records, in.handles, rules, mem_a);
    ProcessScan later = scan;
    later.time_ns = 40 * kSec;
    const ProcessSocketReport again = build_socket_report(later, in.records, in.handles, rules, mem_b);
    CHECK(conn_states(first) == "192=open,127.0.0.1:5432,0;193=peer_closed,127.0.0.1:5432,0;");
    CHECK(conn_states(again) == conn_states(first));
    CHECK(again.db_sockets == first.db_sockets);
    CHECK(first.db_sockets == 1);  // the peer-closed one is not live
    CHECK(first.paired == 1);
    CHECK(first.handles_without_socket == 1);
}
