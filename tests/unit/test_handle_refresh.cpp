// handle_refresh: which live handles' state is read again. A handle is read
// when new or unknown, while connecting and its process called
// PQconnectPoll, when its socket or the socket's traffic changed since its
// last read, when that read came right after traffic, and once a refresh
// period at its process's phase; else its last read stands.
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <vector>

#include "handle_refresh.h"

using connleak::ConnSocket;
using connleak::ConnState;
using connleak::handle_activity;
using connleak::handle_needs_read;
using connleak::handle_read_mark;
using connleak::HandleActivity;
using connleak::HandleReadMark;
using connleak::kHandleRefreshNs;
using connleak::kHandleSettleNs;
using connleak::kPollSettleNs;

namespace {

constexpr uint64_t kSec = 1000000000ULL;

ConnSocket socket_at(uint64_t inode, const char* state, uint64_t last_io_ns, uint64_t use_ns = 0)
{
    ConnSocket s;
    s.peer = "127.0.0.1:5432";
    s.state = state;
    s.inode = inode;
    s.last_io_ns = last_io_ns;
    s.use_ns = use_ns;
    return s;
}

// The activity of a followed socket (traffic hooks on, nothing dropped).
HandleActivity followed(const ConnSocket& sock)
{
    return handle_activity(&sock, true, false, 0);
}

// A handle read at read_ns in `state`, its socket then `sock`.
HandleReadMark read_at(ConnState state, const ConnSocket& sock, uint64_t read_ns)
{
    return handle_read_mark(state, handle_activity(&sock, true, false, 0), read_ns, nullptr, read_ns);
}

}  // namespace

TEST_CASE("a new handle, or one whose read failed, is read")
{
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    CHECK(handle_needs_read(nullptr, handle_activity(&s, true, false, 0), 20 * kSec));
}

TEST_CASE("a quiet idle handle is not read again until its refresh is due")
{
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    const HandleReadMark m = read_at(ConnState::idle, s, 20 * kSec);
    CHECK(m.due_ns() == 20 * kSec + kHandleRefreshNs);
    CHECK_FALSE(handle_needs_read(&m, handle_activity(&s, true, false, 0), 22 * kSec));
    CHECK_FALSE(handle_needs_read(&m, handle_activity(&s, true, false, 0), 20 * kSec + kHandleRefreshNs - 1));
    CHECK(handle_needs_read(&m, handle_activity(&s, true, false, 0), 20 * kSec + kHandleRefreshNs));
}

TEST_CASE("traffic on the socket since the last read means a read")
{
    const ConnSocket before = socket_at(7, "open", 10 * kSec);
    const HandleReadMark m = read_at(ConnState::idle, before, 20 * kSec);
    // BEGIN sent and its result received: a later last_io_ns.
    CHECK(handle_needs_read(&m, followed(socket_at(7, "open", 21 * kSec)), 22 * kSec));
    // A new unit of work begun (the last user's send).
    CHECK(handle_needs_read(&m, followed(socket_at(7, "open", 10 * kSec, 21 * kSec)), 22 * kSec));
}

TEST_CASE("a socket that changes means a read")
{
    const ConnSocket before = socket_at(7, "open", 10 * kSec);
    const HandleReadMark m = read_at(ConnState::idle, before, 20 * kSec);
    // The server closed its end (pg_terminate_backend): TCP CLOSE_WAIT.
    CHECK(handle_needs_read(&m, followed(socket_at(7, "peer_closed", 10 * kSec)), 22 * kSec));
    // libpq closed it (the connection lost), or the socket is gone.
    CHECK(handle_needs_read(&m, followed(socket_at(7, "closed", 10 * kSec)), 22 * kSec));
    // PQreset: a new socket.
    CHECK(handle_needs_read(&m, followed(socket_at(8, "open", 10 * kSec)), 22 * kSec));
    // No socket any more.
    CHECK(handle_needs_read(&m, handle_activity(nullptr, true, false, 0), 22 * kSec));
}

TEST_CASE("unknown handles are read every time, the others only on a change")
{
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    const HandleReadMark m = read_at(ConnState::unknown, s, 20 * kSec);
    CHECK(handle_needs_read(&m, handle_activity(&s, true, false, 0), 22 * kSec));
    for (ConnState st :
         {ConnState::idle, ConnState::in_transaction, ConnState::in_error, ConnState::busy, ConnState::broken}) {
        const HandleReadMark quiet = read_at(st, s, 20 * kSec);
        CHECK_FALSE(handle_needs_read(&quiet, handle_activity(&s, true, false, 0), 22 * kSec));
        // A PQconnectPoll elsewhere in the process does not concern them.
        CHECK_FALSE(handle_needs_read(&quiet, handle_activity(&s, true, false, 21 * kSec), 22 * kSec));
    }
}

TEST_CASE("a connecting handle is read after its process called PQconnectPoll")
{
    // Refused: the RST closed the socket; the next PQconnectPoll turns the
    // handle broken without a byte moved or the socket changing.
    const ConnSocket s = socket_at(7, "closed", 5 * kSec);
    auto mark = [&](uint64_t poll_ns, uint64_t read_ns) {
        return handle_read_mark(ConnState::connecting, handle_activity(&s, true, false, poll_ns), read_ns, nullptr, read_ns);
    };
    // No poll seen (its libpq's PQconnectPoll not probed): every time.
    const HandleReadMark unprobed = mark(0, 20 * kSec);
    CHECK(handle_needs_read(&unprobed, handle_activity(&s, true, false, 0), 40 * kSec));
    // Polled since the last read.
    const HandleReadMark quiet = mark(5 * kSec, 20 * kSec);
    CHECK(handle_needs_read(&quiet, handle_activity(&s, true, false, 21 * kSec), 22 * kSec));
    // No poll since, the last one long before the read: it stands.
    CHECK_FALSE(handle_needs_read(&quiet, handle_activity(&s, true, false, 5 * kSec), 22 * kSec));
    // Read while a call may still run (a DNS lookup): again.
    const HandleReadMark during = mark(15 * kSec, 20 * kSec);
    CHECK(handle_needs_read(&during, handle_activity(&s, true, false, 15 * kSec), 22 * kSec));
    const HandleReadMark after = mark(15 * kSec, 15 * kSec + kPollSettleNs);
    CHECK_FALSE(handle_needs_read(&after, handle_activity(&s, true, false, 15 * kSec), 30 * kSec));
    // Its socket and traffic do not matter: only PQconnectPoll changes it.
    CHECK_FALSE(handle_needs_read(&quiet, handle_activity(&s, false, true, 5 * kSec), 22 * kSec));
    CHECK_FALSE(handle_needs_read(&quiet, handle_activity(nullptr, true, true, 5 * kSec), 22 * kSec));
    // The refresh still comes.
    CHECK(handle_needs_read(&quiet, handle_activity(&s, true, false, 5 * kSec), quiet.due_ns()));
}

TEST_CASE("a read right after traffic is done again at the next interval")
{
    // Received at 20 s, read 0.2 s later: libpq may not have parsed it yet.
    const ConnSocket s = socket_at(7, "open", 20 * kSec);
    const HandleReadMark soon = read_at(ConnState::busy, s, 20 * kSec + kHandleSettleNs / 5);
    CHECK(handle_needs_read(&soon, handle_activity(&s, true, false, 0), 22 * kSec));
    // Read again once settled: it stands.
    const HandleReadMark settled = read_at(ConnState::idle, s, 20 * kSec + kHandleSettleNs);
    CHECK_FALSE(handle_needs_read(&settled, handle_activity(&s, true, false, 0), 22 * kSec));
}

TEST_CASE("without the traffic hooks, or a socket they do not follow, every interval is a read")
{
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    const HandleReadMark m = read_at(ConnState::idle, s, 20 * kSec);
    CHECK(handle_needs_read(&m, handle_activity(&s, false, false, 0), 22 * kSec));
    CHECK_FALSE(handle_activity(&s, false, false, 0).known);
    // A socket found by the scan only (no record, no traffic entry).
    const ConnSocket untimed = socket_at(7, "open", 0);
    CHECK_FALSE(handle_activity(&untimed, true, false, 0).known);
    const HandleReadMark u = read_at(ConnState::idle, untimed, 20 * kSec);
    CHECK(handle_needs_read(&u, handle_activity(&untimed, true, false, 0), 22 * kSec));
    // No socket at all is known: only a new socket can change such a handle,
    // and makes a record, unless its process's records did not all fit.
    const HandleReadMark none =
        handle_read_mark(ConnState::broken, handle_activity(nullptr, true, false, 0), 20 * kSec, nullptr, 20 * kSec);
    CHECK_FALSE(handle_needs_read(&none, handle_activity(nullptr, true, false, 0), 22 * kSec));
    CHECK(handle_needs_read(&none, handle_activity(nullptr, true, true, 0), 22 * kSec));
    // A socket with its record is followed, whatever did not fit beside it.
    CHECK_FALSE(handle_needs_read(&m, handle_activity(&s, true, true, 0), 22 * kSec));
}

TEST_CASE("every read comes due at its handle's phase of the refresh period")
{
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    const HandleActivity a = handle_activity(&s, true, false, 0);
    auto mark = [&](uint64_t now, const HandleReadMark* last, uint64_t phase) {
        return handle_read_mark(ConnState::idle, a, now, last, phase);
    };
    // A first read at 20 s, phase 7 s of the 30 s period: a period on (50 s),
    // then on to the phase (67 s).
    const HandleReadMark first = mark(20 * kSec, nullptr, 7 * kSec);
    CHECK(first.due_ns() == 67 * kSec);
    // Read because due, a report late (68 s): one period after the due time.
    const HandleReadMark due = mark(68 * kSec, &first, 7 * kSec);
    CHECK(due.due_ns() == 97 * kSec);
    CHECK(mark(97 * kSec, &due, 7 * kSec).due_ns() == 127 * kSec);
    // The period grown since (more live handles): still at the phase, on
    // the new period's grid, so a process's handles stay together.
    const uint64_t longer = 40 * kSec;
    const HandleReadMark regrid = handle_read_mark(ConnState::idle, a, 68 * kSec, &first, 7 * kSec, longer);
    CHECK(regrid.due_ns() % longer == 7 * kSec);
    CHECK(regrid.due_ns() > 68 * kSec);
    CHECK(regrid.due_ns() <= 68 * kSec + 2 * longer);
    // Kept to the ms, rounded up: the next due time is back on the grid.
    HandleReadMark off = first;
    off.due_ms += 1;  // 67.001 s
    CHECK(mark(68 * kSec, &off, 7 * kSec).due_ns() == 97 * kSec);
    // Read for another reason before it was due (traffic at 40 s): 1 to 2
    // periods on, at the phase.
    CHECK(mark(40 * kSec, &first, 7 * kSec).due_ns() == 97 * kSec);
    // A read long past its due time (the process was not read meanwhile):
    // as if first.
    CHECK(mark(200 * kSec, &first, 7 * kSec).due_ns() == 247 * kSec);
    // At the phase exactly: a full period on.
    CHECK(mark(37 * kSec, nullptr, 7 * kSec).due_ns() == 67 * kSec);
    // The phase is taken modulo the period.
    CHECK(mark(20 * kSec, nullptr, 7 * kSec + 2 * kHandleRefreshNs).due_ns() == 67 * kSec);
    // Never within a period of a read, never past two.
    for (uint64_t now = 0; now < 70 * kSec; now += kSec / 3) {
        const uint64_t due_ns = mark(now, nullptr, 11 * kSec + 5).due_ns();
        CHECK(due_ns >= now + kHandleRefreshNs);
        CHECK(due_ns < now + 2 * kHandleRefreshNs + 1000000);
        // At the phase, or less than a ms after it (kept in whole ms).
        CHECK(due_ns % kHandleRefreshNs - (11 * kSec + 5) < 1000000);
    }
}

TEST_CASE("handles made together come due spread over the period")
{
    // 1,000 processes (pids in a run) x 100 handles, read at once: their
    // due times fall in every one of 30 one-second slots, none with more
    // than twice its share (pid * 31 + conn / 16 used 3 slots), and a
    // process's handles all in one slot (read in one batch).
    const ConnSocket s = socket_at(7, "open", 10 * kSec);
    const HandleActivity a = handle_activity(&s, true, false, 0);
    std::vector<int> slot(30, 0);
    for (uint32_t pid = 4000; pid < 5000; pid++) {
        std::set<uint64_t> own;
        for (uint64_t i = 0; i < 100; i++) {
            // Read over three reports, 2 s apart: the same due time still.
            const uint64_t read_ns = 20 * kSec + (i % 3) * 2 * kSec;
            const uint64_t due =
                handle_read_mark(ConnState::broken, a, read_ns, nullptr, connleak::handle_refresh_phase(pid)).due_ns();
            own.insert(due);
            slot[(due - 50 * kSec) / kSec % 30]++;
        }
        CHECK(own.size() <= 2);  // 2 only when the phase falls between those reads
    }
    for (int n : slot) {
        CHECK(n > 100000 / 30 / 2);
        CHECK(n < 100000 / 30 * 2);
    }
}

TEST_CASE("the safety net reads at most 1,000 handles a second")
{
    CHECK(connleak::handle_refresh_period(0) == kHandleRefreshNs);
    CHECK(connleak::handle_refresh_period(30000) == kHandleRefreshNs);
    CHECK(connleak::handle_refresh_period(30001) == 30001 * connleak::kHandleNetReadNs);
    CHECK(connleak::handle_refresh_period(100000) == 100 * kSec);
}
