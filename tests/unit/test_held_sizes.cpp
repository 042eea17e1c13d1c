// What connleak holds per socket and per live handle between reports
// (100,000 of each at scale, issue 16): the structs kept that many times
// stay this small.
#include <catch2/catch.hpp>

#include "handle_refresh.h"
#include "handle_states.h"
#include "leak_notices.h"
#include "model.h"
#include "peer_names.h"
#include "raw_entries.h"
#include "socket_model.h"
#include "sockets.h"

using connleak::HandleReadMark;
using connleak::HeldSocket;
using connleak::Peer;
using connleak::SocketRecord;
using connleak::ConnSocket;
using connleak::SharedMap;
using connleak::SharedText;

TEST_CASE("held per socket: a peer without a Unix path of its own, a record with its flags packed")
{
    // A shared text is one pointer (its count beside the text), not a shared_ptr's two.
    CHECK(sizeof(SharedText) == sizeof(void*));
    // An IPv4 address in place, an IPv6 address or a Unix path as the id of
    // its one counted copy: 8 bytes, was 32 (the 16-byte address and a
    // shared path in place), 56 with the path a string.
    CHECK(sizeof(Peer) == 8);
    // Two peers, the last use's stack id, no connecting thread, TCP told by the peer's kind, the traffic
    // flag in the top bit of the last use's thread: 104 bytes, was 112 (160 with 32-byte peers, 216 with strings).
    CHECK(sizeof(SocketRecord) <= 104);
    CHECK(sizeof(HeldSocket) <= 24);  // the state in the inode's top byte: was 32, 80 with 32-byte peers
}

TEST_CASE("a socket record in the kernel's map: TCP and Unix addresses share their room")
{
    // 100,000 records at scale, in the BPF map memory (issue 16: <= 64 MB): 176 bytes, was 216.
    CHECK(sizeof(sock_rec) == 176);
    sock_rec r{};
    CHECK(static_cast<void*>(r.path) == static_cast<void*>(r.addr));
    CHECK(sizeof(r.path) == SOCKETS_PATH_LEN);  // a whole sun_path still fits
}

TEST_CASE("held per live handle: its socket in the kept report, an entry of a sorted vector")
{
    // Peer and state shared texts (8 bytes each), the local address a Peer
    // (8), not a string (32): 64 bytes, was 88 (136 with three strings).
    CHECK(sizeof(ConnSocket) <= 64);
    // The entry itself, no tree node around it: 72 bytes, was 96 (a node was 176, 192 with malloc's header).
    CHECK(sizeof(SharedMap<uint64_t, ConnSocket>::value_type) <= 72);
}

TEST_CASE("held per live handle: its read mark's flags together, its state once")
{
    CHECK(sizeof(HandleReadMark) <= 40);  // was 56, then 48 (the due time in ns)
    // HandleStates' row: its state is its read mark's, not a field again: 80 bytes, was 96, then 88.
    CHECK(sizeof(connleak::HandleStates::Known) <= 80);
}

TEST_CASE("held per live handle: its reported leak and its live-handle row without padding")
{
    // A counted pointer to its origin (one pointer) instead of a shared_ptr (two), the key's fields in
    // place with the thread and the pooled flag in the pid's padding: 48 bytes, was 56 (64 with a shared_ptr).
    CHECK(connleak::LeakNotices::kReportedRowSize <= 48);
    // The live-handle map's entry kept between reports without the key's and value's padding: 48 bytes, was 56.
    CHECK(sizeof(connleak::ConnRow) <= 48);
}

TEST_CASE("a local address kept as a Peer prints as the string it replaces")
{
    auto v4 = [](uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
        const uint8_t addr[4] = {a, b, c, d};
        return Peer::inet4(addr, port).str();
    };
    CHECK(v4(127, 0, 0, 1, 40112) == "127.0.0.1:40112");
    CHECK(v4(255, 255, 255, 255, 65535) == "255.255.255.255:65535");
    CHECK(v4(0, 0, 0, 0, 0) == "0.0.0.0:0");
    CHECK(v4(10, 100, 9, 90, 5432) == "10.100.9.90:5432");
    CHECK(Peer().str().empty());
}

TEST_CASE("a peer's Unix path: shared, compared and printed as the text")
{
    const char path[] = "/run/postgresql/.s.PGSQL.5432";
    const Peer a = Peer::unix_path(path, sizeof(path));
    Peer b = a;
    CHECK(a == b);
    CHECK(a.str() == "/run/postgresql/.s.PGSQL.5432");
    CHECK(a.path() == "/run/postgresql/.s.PGSQL.5432");
    const char other[] = "/tmp/.s.PGSQL.5433";
    b = Peer::unix_path(other, sizeof(other));
    CHECK(a != b);
    CHECK(a < b);  // by the text, as the string compared ("/run" before "/tmp")
    const char abstract[] = {'\0', 'p', 'g', '\0', '\0'};
    CHECK(Peer::unix_path(abstract, sizeof(abstract)).str() == "@pg");
    CHECK(Peer().path().empty());
}

TEST_CASE("a shared text: copies share one body, the last one frees it")
{
    SharedText a("127.0.0.1:5432");
    {
        SharedText b = a;
        SharedText c;
        c = b;
        CHECK(c.c_str() == a.c_str());  // the same body, not a copy of the text
        SharedText d = std::move(c);
        CHECK(c.empty());
        CHECK(d == "127.0.0.1:5432");
        d = d;  // itself: still held
        CHECK(d.str() == "127.0.0.1:5432");
        b = SharedText("other");
        CHECK(b == "other");
        CHECK(a == "127.0.0.1:5432");
    }
    CHECK(a.str() == "127.0.0.1:5432");
    CHECK(SharedText("").empty());
    CHECK(SharedText() == SharedText(""));
    CHECK(SharedText("a") < SharedText("b"));
}

TEST_CASE("a peer's IPv6 address and Unix path: one counted copy per name, freed with the last peer")
{
    namespace names = connleak::peer_names;
    const size_t before = names::live();
    const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const char path[] = "/run/postgresql/.s.PGSQL.5432";
    {
        const Peer a = Peer::inet6(v6, 5432);
        const Peer b = Peer::inet6(v6, 40112);  // the same address: the same name
        const Peer u = Peer::unix_path(path, sizeof(path));
        CHECK(names::live() == before + 2);
        Peer c = a;
        Peer d = std::move(c);
        CHECK(c.kind() == Peer::Kind::None);  // moved from: empty, holds nothing
        CHECK(d == a);
        CHECK(a != b);
        CHECK(a.str() == "[2001:db8::1]:5432");
        CHECK(b.str() == "[2001:db8::1]:40112");
        CHECK(a.addr()[15] == 1);
        CHECK(u.path() == "/run/postgresql/.s.PGSQL.5432");
        CHECK(Peer::unix_name("/run/postgresql/.s.PGSQL.5432") == u);
        d = u;  // the address's name still held by a and b
        CHECK(names::live() == before + 2);
        CHECK(d.str() == "/run/postgresql/.s.PGSQL.5432");
    }
    CHECK(names::live() == before);  // the last peers gone, their names too
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7};
    const Peer m = Peer::inet6(mapped, 5432);
    CHECK_FALSE(m.v6());
    CHECK(m.str() == "10.0.0.7:5432");
    CHECK(names::live() == before);  // an IPv4 address needs no name
}

TEST_CASE("peers order as they did with their address and path in place")
{
    const uint8_t a1[4] = {10, 0, 0, 2}, a2[4] = {127, 0, 0, 1}, a3[4] = {192, 168, 0, 1};
    const uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    const uint8_t v6b[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const Peer none;
    const Peer p1 = Peer::inet4(a1, 6000), p2 = Peer::inet4(a2, 5432), p2b = Peer::inet4(a2, 5433),
               p3 = Peer::inet4(a3, 1);
    // Made in the other order, so their ids do not follow their bytes.
    const Peer q2 = Peer::inet6(v6b, 1), q1 = Peer::inet6(v6a, 9), q1b = Peer::inet6(v6a, 10);
    const Peer u1 = Peer::unix_name("/tmp/.s.PGSQL.5433"), u0 = Peer::unix_name("/run/postgresql/.s.PGSQL.5432");
    const std::vector<Peer> ordered = {none, p1, p2, p2b, p3, q1, q1b, q2, u0, u1};
    for (size_t i = 0; i < ordered.size(); i++)
        for (size_t j = 0; j < ordered.size(); j++) {
            INFO(i << " " << j);
            CHECK((ordered[i] < ordered[j]) == (i < j));
            CHECK((ordered[i] == ordered[j]) == (i == j));
        }
}

TEST_CASE("a report's rows, made anew for every live handle each report: fields without padding")
{
    // 224 bytes before (ninth session): bools and 32-bit fields between 64-bit ones.
    CHECK(sizeof(connleak::ConnReport) <= 176);
    CHECK(sizeof(connleak::RawConn) <= 88);  // 96 with the pid first
}

TEST_CASE("a socket record's flags packed: the traffic bit beside the thread, TCP by the peer's kind")
{
    SocketRecord r;
    CHECK(r.use_tid == 0);
    CHECK_FALSE(r.traffic);
    r.use_tid = 4194304;  // PID_MAX_LIMIT: the largest thread id Linux gives
    r.traffic = true;
    CHECK(r.use_tid == 4194304);
    CHECK(r.traffic);
    r.traffic = false;
    CHECK(r.use_tid == 4194304);
    const uint8_t a[4] = {127, 0, 0, 1};
    r.peer = Peer::inet4(a, 5432);
    CHECK(r.tcp());
    r.peer = Peer::unix_name("/run/postgresql/.s.PGSQL.5432");
    CHECK_FALSE(r.tcp());
    r.peer = Peer();  // a family not named (sock_rec's family neither AF_INET nor AF_UNIX): TCP, as before
    CHECK(r.tcp());
}

TEST_CASE("a held socket's state packed above its inode")
{
    HeldSocket h;
    CHECK(h.inode == 0);
    CHECK(h.state == connleak::SocketState::Live);
    h.inode = 0xffffffffULL;  // the largest socket inode (get_next_ino() is 32 bits)
    h.state = connleak::SocketState::Closed;
    CHECK(h.inode == 0xffffffffULL);
    CHECK(h.state == connleak::SocketState::Closed);
    h.state = connleak::SocketState::PeerClosed;
    CHECK(h.inode == 0xffffffffULL);
    const HeldSocket g{(1ULL << 56) - 1, Peer(), connleak::SocketState::Live, Peer()};
    CHECK(g.inode == (1ULL << 56) - 1);
    CHECK(g.state == connleak::SocketState::Live);
}
