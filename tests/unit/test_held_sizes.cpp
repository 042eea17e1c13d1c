// What connleak holds per socket and per live handle between reports
// (100,000 of each at scale, issue 16): the structs kept that many times
// stay this small.
#include <catch2/catch.hpp>

#include "handle_refresh.h"
#include "model.h"
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
    // A Unix path shared (8 bytes), not a string (32): 32 bytes, was 56 (40 with a shared_ptr).
    CHECK(sizeof(Peer) <= 32);
    // Two peers, the last use's stack id and the flags last: 160 bytes, was 216 (224 with the stack id, 176 with 40-byte peers).
    CHECK(sizeof(SocketRecord) <= 160);
    CHECK(sizeof(HeldSocket) <= 80);  // 96 with 40-byte peers
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
    // Peer and state shared texts (8 bytes each), not strings (32 each): 88 bytes, was 136.
    CHECK(sizeof(ConnSocket) <= 88);
    // The entry itself, no tree node around it (a node was 176 bytes, 192 with malloc's header).
    CHECK(sizeof(SharedMap<uint64_t, ConnSocket>::value_type) <= 96);
}

TEST_CASE("held per live handle: its read mark's flags together")
{
    CHECK(sizeof(HandleReadMark) <= 48);  // was 56
}

TEST_CASE("a peer's Unix path: shared, compared and printed as the text")
{
    const char path[] = "/run/postgresql/.s.PGSQL.5432";
    const Peer a = Peer::unix_path(path, sizeof(path));
    Peer b = a;
    CHECK(a == b);
    CHECK(a.str() == "/run/postgresql/.s.PGSQL.5432");
    CHECK(a.path == "/run/postgresql/.s.PGSQL.5432");
    const char other[] = "/tmp/.s.PGSQL.5433";
    b = Peer::unix_path(other, sizeof(other));
    CHECK(a != b);
    CHECK(a < b);  // by the text, as the string compared ("/run" before "/tmp")
    const char abstract[] = {'\0', 'p', 'g', '\0', '\0'};
    CHECK(Peer::unix_path(abstract, sizeof(abstract)).str() == "@pg");
    CHECK(Peer().path.empty());
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

TEST_CASE("a report's rows, made anew for every live handle each report: fields without padding")
{
    // 224 bytes before (ninth session): bools and 32-bit fields between 64-bit ones.
    CHECK(sizeof(connleak::ConnReport) <= 200);
    CHECK(sizeof(connleak::RawConn) <= 88);  // 96 with the pid first
}
