#include "handle_refresh.h"
#include "digest_mix.h"

namespace connleak {
namespace {

uint64_t digest(const std::string& s)
{
    uint64_t h = s.size();
    for (unsigned char c : s)
        h = digest_mix(h, c);
    return h;
}

}  // namespace

HandleActivity handle_activity(const ConnSocket* sock, bool traffic, bool dropped, uint64_t poll_ns)
{
    HandleActivity a;
    a.poll_ns = poll_ns;
    if (!traffic)
        return a;  // a query would go unseen
    if (!sock || sock->inode == 0) {
        // No socket: only a new one (PQreset) can change it, and makes a
        // record, unless the records did not all fit.
        a.known = !dropped;
        return a;
    }
    // A socket without a traffic time is one the hooks do not follow (its
    // traffic entry did not fit, or it is known from the scan only).
    a.known = sock->last_io_ns != 0;
    a.last_io_ns = sock->last_io_ns;
    a.signature = digest_mix(digest_mix(digest_mix(digest_mix(1, sock->inode), digest(sock->state)), sock->last_io_ns),
                             sock->use_ns);
    return a;
}

bool handle_needs_read(const HandleReadMark* mark, const HandleActivity& now_activity, uint64_t now_ns)
{
    if (!mark || mark->state == ConnState::unknown)
        return true;  // new, its read failed, or not a handle's fields (half made, freed under us)
    if (now_ns >= mark->due_ns())
        return true;
    if (mark->state == ConnState::connecting)
        // Only PQconnectPoll changes a connecting handle (PQconnectStart
        // and PQreset call it too), with or without traffic: read it after
        // any call of its process since its last read, or during one.
        return !now_activity.poll_ns || now_activity.poll_ns != mark->poll_ns ||
               mark->read_ns < now_activity.poll_ns + kPollSettleNs;
    if (!now_activity.known || !mark->known)
        return true;
    if (now_activity.signature != mark->signature)
        return true;
    // The last read may have come between a receive and its parse.
    return mark->last_io_ns && mark->read_ns < mark->last_io_ns + kHandleSettleNs;
}

HandleReadMark handle_read_mark(ConnState state, const HandleActivity& activity, uint64_t now_ns,
                                const HandleReadMark* last, uint64_t phase, uint64_t refresh_ns)
{
    HandleReadMark m;
    m.state = state;
    m.signature = activity.signature;
    m.known = activity.known;
    m.last_io_ns = activity.last_io_ns;
    m.poll_ns = activity.poll_ns;
    m.read_ns = now_ns;
    if (refresh_ns == 0)
        return m;  // due at once
    uint64_t due = 0;
    const uint64_t grid = phase % refresh_ns;
    if (last && last->read_ns && now_ns >= last->due_ns() && now_ns < last->due_ns() + refresh_ns) {
        // Read because due (reports come late by up to an interval): a
        // period after that due time, at the grid point of the phase
        // nearest to it (the due time is kept to the ms, and the period
        // grows and shrinks with the live handles: a process's handles stay
        // together).
        const uint64_t at = last->due_ns() + refresh_ns;
        const uint64_t before = at - (at % refresh_ns + refresh_ns - grid) % refresh_ns;
        due = at - before < refresh_ns / 2 ? before : before + refresh_ns;
        if (due <= now_ns)
            due += refresh_ns;
    } else {
        // A period on, then on to the handle's phase.
        const uint64_t at = now_ns + refresh_ns;
        due = at + (grid + refresh_ns - at % refresh_ns) % refresh_ns;
    }
    // In whole ms after the read, rounded up: never before it was due.
    const uint64_t ms = (due - now_ns + 999999) / 1000000;
    m.due_ms = ms > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(ms);
    return m;
}

uint64_t handle_refresh_phase(uint32_t pid)
{
    return digest_mix(0, pid);
}

}  // namespace connleak
