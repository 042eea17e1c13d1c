#include "libpq_handle.h"

namespace connleak {
namespace {

// libpq-fe.h's public enums (stable across versions: applications are
// compiled against them).
constexpr int32_t kConnectionOk = 0, kConnectionBad = 1;
constexpr int32_t kConnectionLast = 64;  // well above CONNECTION_CHECK_STANDBY (13)
constexpr int32_t kTransIdle = 0, kTransActive = 1, kTransInTrans = 2, kTransInError = 3;
constexpr int32_t kAsyncIdle = 0, kAsyncLast = 64;  // PGASYNC_*: a handful

}  // namespace

const char* conn_state_name(ConnState s)
{
    switch (s) {
    case ConnState::connecting:
        return "connecting";
    case ConnState::idle:
        return "idle";
    case ConnState::in_transaction:
        return "in_transaction";
    case ConnState::in_error:
        return "in_error";
    case ConnState::busy:
        return "busy";
    case ConnState::broken:
        return "broken";
    case ConnState::unknown:
        break;
    }
    return "unknown";
}

ConnState conn_state_of(const HandleFields& f)
{
    if (f.status < 0 || f.status > kConnectionLast || f.async_status < 0 || f.async_status > kAsyncLast)
        return ConnState::unknown;  // not a live handle's fields
    if (f.status == kConnectionBad)
        return ConnState::broken;
    if (f.status != kConnectionOk)
        return ConnState::connecting;
    if (f.async_status != kAsyncIdle)
        return ConnState::busy;
    switch (f.xact_status) {
    case kTransIdle:
        return ConnState::idle;
    case kTransActive:
        return ConnState::busy;
    case kTransInTrans:
        return ConnState::in_transaction;
    case kTransInError:
        return ConnState::in_error;
    default:
        return ConnState::unknown;
    }
}

}  // namespace connleak
