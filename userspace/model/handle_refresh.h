// Which live handles' state to read from their process's memory this
// interval. A handle's client state changes only inside a libpq call, and
// every such change happens in PQconnectPoll while connecting (a refused
// connect turns a handle broken there without a byte moved: its socket was
// closed by the RST already), or comes with traffic on its socket (a query
// sent, a result or the server's EOF received) or with its socket changing
// (closed, peer closed, a new one on PQreset). So a handle is read again
// only when one of those can have happened since its last read, and as a
// safety net once a period (handle_refresh_period: 30 s, longer past
// 30,000 live handles; up to two periods after a read something else caused).
#pragma once

#include <cstdint>

#include "libpq_handle.h"
#include "socket_model.h"

namespace connleak {

// However quiet, a handle is read again this often (a safety net for a
// change without traffic, e.g. a result parsed long after its receive);
// after a read something else caused, within twice this (handle_read_mark).
constexpr uint64_t kHandleRefreshNs = 30ULL * 1000000000ULL;
// Past 30,000 live handles the safety net's period grows to this much per
// handle: at most 1,000 of its reads a second (~2.4 us each at scale; at
// 100,000 handles every 30 s they cost each 2 s report ~16 ms), so a quiet
// handle is read every 100 s there.
constexpr uint64_t kHandleNetReadNs = 1000000ULL;

// The safety net's period for `live` handles.
inline uint64_t handle_refresh_period(size_t live)
{
    return live * kHandleNetReadNs > kHandleRefreshNs ? live * kHandleNetReadNs : kHandleRefreshNs;
}

// A read this soon after its socket's last traffic may have raced the libpq
// call that moved it (received, not parsed yet): read again next time.
constexpr uint64_t kHandleSettleNs = 1000000000ULL;
// A connecting handle is read while its process called PQconnectPoll this
// recently: a call may run long (a blocking DNS lookup) before it changes
// the state.
constexpr uint64_t kPollSettleNs = 10ULL * 1000000000ULL;

// What the socket tracer saw of a handle's socket this interval.
struct HandleActivity {
    bool known = false;       // its socket's traffic and changes followed (else every interval is a read)
    uint64_t signature = 0;   // its socket, the socket's state and its traffic, digested
    uint64_t last_io_ns = 0;  // the socket's last traffic (or connect), 0: none
    uint64_t poll_ns = 0;     // its process's latest PQconnectPoll entry, 0: not known
};

// What was remembered of a handle at its last read.
struct HandleReadMark {
    uint64_t signature = 0;   // HandleActivity::signature then
    uint64_t last_io_ns = 0;  // HandleActivity::last_io_ns then
    uint64_t poll_ns = 0;     // HandleActivity::poll_ns then
    uint64_t read_ns = 0;     // when it was read
    // Read again from due_ns() on, whatever: in ms after the read (at most
    // two refresh periods, ~50 days in 32 bits), so that it, the state and
    // the flag share 8 bytes: 40 bytes a mark, kept per live handle
    // (HandleStates::Known, 100,000 at scale).
    uint32_t due_ms = 0;
    ConnState state = ConnState::unknown;
    bool known = false;  // HandleActivity::known then

    uint64_t due_ns() const { return read_ns + due_ms * 1000000ULL; }
};

// The activity of a handle whose socket report is `sock` (null: the socket
// tracer has no entry for it). `traffic`: the send/recv hooks run.
// `dropped`: some socket records of its process did not fit (a handle
// without one may have a socket nobody follows). `poll_ns`: its process's
// latest PQconnectPoll entry (0: none seen, or not probed).
HandleActivity handle_activity(const ConnSocket* sock, bool traffic, bool dropped, uint64_t poll_ns);

// Whether a handle last read as `mark` (null: never read, or its read
// failed) must be read now.
bool handle_needs_read(const HandleReadMark* mark, const HandleActivity& now_activity, uint64_t now_ns);

// The mark of a read at now_ns; `last`: the handle's previous mark (null:
// its first read). Every handle comes due at its phase of the refresh
// period (`phase`, its process's: handle_refresh_phase, modulo refresh_ns): a
// read that came because it was due is next due one period after that due
// time; any other read, 1 to 2 periods after it. So handles read together
// (100,000 made at once at scale, or re-read together while connecting)
// come due spread over the period, and never within a period of a read
// that something else caused.
HandleReadMark handle_read_mark(ConnState state, const HandleActivity& activity, uint64_t now_ns,
                                const HandleReadMark* last, uint64_t phase, uint64_t refresh_ns = kHandleRefreshNs);

// The phase of a process's handles (handle_read_mark): its pid, mixed. One
// phase for all of a process's handles, so their safety reads come together,
// in one batch of reads of its memory: spread one by one, 2,000 reads a
// report at scale took one system call each (~15 ms, not ~5). Mixed, as
// pids come in runs (pid * 31 + conn / 16 took 3 of 30 one-second slots).
uint64_t handle_refresh_phase(uint32_t pid);

}  // namespace connleak
