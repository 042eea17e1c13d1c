// last_user: a live handle's idle time and last user from what the socket
// hooks recorded (ConnSocket) and the last-use stacks read (RawConn), and
// the JSON keys they go to. Exact numbers, no kernel.
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "json_output.h"
#include "last_user.h"
#include "model.h"
#include "socket_model.h"

using connleak::add_last_user;
using connleak::ConnReport;
using connleak::ConnSocket;
using connleak::Frames;
using connleak::RawConn;
using connleak::RawSite;
using connleak::SiteKey;

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kNow = 50'000 * kMs;

std::string name_of(const RawSite& s)
{
    return s.site.kind == SiteKey::Kind::last_use ? "user" + std::to_string(s.site.value) + " (app.py:3)" : "?";
}

Frames frames_of(const RawSite& s)
{
    return std::make_shared<const std::vector<std::string>>(std::vector<std::string>{name_of(s), "main (app.py:9)"});
}

RawConn conn_used(uint64_t use_ns, uint64_t stack)
{
    RawConn c;
    c.pid = 7;
    c.conn = 0x1000;
    c.last_use = SiteKey::last_use(stack);
    c.last_use_ns = use_ns;
    c.last_use_tid = 8;
    return c;
}

ConnSocket socket_used(uint64_t last_io_ns, uint64_t use_ns)
{
    ConnSocket s;
    s.peer = "127.0.0.1:5432";
    s.state = "open";
    s.last_io_ns = last_io_ns;
    s.use_ns = use_ns;
    return s;
}

}  // namespace

TEST_CASE("idle time: since the socket's last traffic")
{
    ConnReport r;
    add_last_user(r, RawConn{}, socket_used(kNow - 1500 * kMs, 0), kNow, name_of, frames_of);
    CHECK(r.idle_ms == 1500.0);
    CHECK(r.last_used_site.empty());  // no use seen
    CHECK(r.last_used_frames == nullptr);
}

TEST_CASE("idle time: unknown without socket traffic records, 0 for traffic after the maps were read")
{
    ConnReport unknown;
    add_last_user(unknown, RawConn{}, ConnSocket{}, kNow, name_of, frames_of);
    CHECK(unknown.idle_ms < 0);
    ConnReport later;
    add_last_user(later, RawConn{}, socket_used(kNow + 3 * kMs, 0), kNow, name_of, frames_of);
    CHECK(later.idle_ms == 0.0);
}

TEST_CASE("last user: the stack of the socket's latest use")
{
    ConnReport r;
    add_last_user(r, conn_used(kNow - 20 * kMs, 2), socket_used(kNow - 10 * kMs, kNow - 20 * kMs), kNow, name_of,
                  frames_of);
    CHECK(r.last_used_site == "user2 (app.py:3)");
    REQUIRE(r.last_used_frames);
    CHECK(r.last_used_frames->size() == 2);
    CHECK(r.last_used_tid == 8);
    CHECK(r.idle_ms == 10.0);
}

TEST_CASE("last user: unknown when a newer use's stack was dropped or not read yet")
{
    // The socket says a later send began work; the stack seen is an older borrower's.
    ConnReport r;
    add_last_user(r, conn_used(kNow - 900 * kMs, 1), socket_used(kNow - 5 * kMs, kNow - 6 * kMs), kNow, name_of,
                  frames_of);
    CHECK(r.last_used_site.empty());
    CHECK(r.last_used_frames == nullptr);
    CHECK(r.idle_ms == 5.0);
}

TEST_CASE("last user: a stack the kernel walked, named by its id on the socket")
{
    // An older use came as a copy (user1); the latest one's stack the kernel
    // walked (id 0xabc): its id and thread are on the socket, no copy came.
    ConnSocket sock = socket_used(kNow - 5 * kMs, kNow - 6 * kMs);
    sock.use_stack = 0xabc;
    sock.use_tid = 9;
    const connleak::UseStacks read = {{{7, 0xabc}, SiteKey::last_use(3)}, {{8, 0xdef}, SiteKey::last_use(5)}};
    ConnReport r;
    add_last_user(r, conn_used(kNow - 900 * kMs, 1), sock, kNow, name_of, frames_of, read);
    CHECK(r.last_used_site == "user3 (app.py:3)");
    REQUIRE(r.last_used_frames);
    CHECK(r.last_used_frames->size() == 2);
    CHECK(r.last_used_tid == 9);
    CHECK(r.idle_ms == 5.0);
    // Without any copy ever.
    RawConn never_copied;
    never_copied.pid = 7;
    never_copied.conn = 0x1000;
    ConnReport first;
    add_last_user(first, never_copied, sock, kNow, name_of, frames_of, read);
    CHECK(first.last_used_site == "user3 (app.py:3)");
}

TEST_CASE("last user: unknown while the kernel-walked stack is not read yet, never the older copy's")
{
    ConnSocket sock = socket_used(kNow - 5 * kMs, kNow - 6 * kMs);
    sock.use_stack = 0xabc;
    sock.use_tid = 9;
    // Only another process's stack of that id is known: ids are per process.
    const connleak::UseStacks read = {{{8, 0xabc}, SiteKey::last_use(5)}};
    ConnReport r;
    add_last_user(r, conn_used(kNow - 900 * kMs, 1), sock, kNow, name_of, frames_of, read);
    CHECK(r.last_used_site.empty());
    CHECK(r.last_used_frames == nullptr);
    CHECK(r.last_used_tid == 0);
    CHECK(r.idle_ms == 5.0);
}

TEST_CASE("last user in JSON: idle_ms, last_used_site, last_used_frames, null when unknown")
{
    connleak::Snapshot snap;
    connleak::ProcessReport p;
    p.pid = 7;
    ConnReport known;
    known.conn = 0x1000;
    add_last_user(known, conn_used(kNow - 20 * kMs, 4), socket_used(kNow - 1234 * kMs, kNow - 20 * kMs), kNow, name_of,
                  frames_of);
    ConnReport unknown;
    unknown.conn = 0x2000;
    p.connections = {known, unknown};
    snap.processes.push_back(p);
    const auto j = connleak::snapshot_to_json(snap);
    const auto& conns = j["processes"][0]["connections"];
    CHECK(conns[0]["idle_ms"] == 1234.0);
    CHECK(conns[0]["last_used_site"] == "user4 (app.py:3)");
    CHECK(conns[0]["last_used_frames"] == nlohmann::ordered_json::array({"user4 (app.py:3)", "main (app.py:9)"}));
    CHECK(conns[1]["idle_ms"].is_null());
    CHECK(conns[1]["last_used_site"].is_null());
    CHECK(conns[1]["last_used_frames"].is_null());
}
