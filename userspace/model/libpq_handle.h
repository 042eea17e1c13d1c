// What connleak reads of a libpq handle (PGconn) in a traced process, and
// the client's own view of the connection it gives. The field offsets are
// never written down per libpq version: symbols/libpq_layout derives them
// from libpq's exported accessors. The password field is never located,
// so it can never be read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "shared_text.h"

namespace connleak {

// Offsets into PGconn, each found in the accessor named beside it.
struct LibpqLayout {
    uint32_t status = 0;           // PQstatus: ConnStatusType, 4 bytes
    uint32_t async_status = 0;     // PQtransactionStatus: PGAsyncStatusType, 4 bytes
    uint32_t xact_status = 0;      // PQtransactionStatus: PGTransactionStatusType, 4 bytes
    uint32_t be_pid = 0;           // PQbackendPID: int
    uint32_t db_name = 0;          // PQdb: char *
    uint32_t pguser = 0;           // PQuser: char *
    std::optional<uint32_t> sock;  // PQsocket: int (only if its code matched)
};

// The fields of one handle as read from the target's memory.
struct HandleFields {
    int32_t status = 0, async_status = 0, xact_status = 0, be_pid = 0;
};

// The client's view (DESIGN.md "state"); unknown when the fields make no
// sense (the handle was freed under us, or libpq changed its enums).
enum class ConnState : uint8_t { unknown, connecting, idle, in_transaction, in_error, busy, broken };

// "connecting", "idle", ... ("unknown" for unknown).
const char* conn_state_name(ConnState s);

// Exactly what PQtransactionStatus() computes (the code the layout was
// matched against), with its UNKNOWN split by PQstatus() into broken
// (CONNECTION_BAD) and connecting (any other status but OK):
//   status != OK         → broken / connecting
//   asyncStatus != IDLE  → busy (PQTRANS_ACTIVE)
//   xactStatus           → idle, in_transaction, in_error (busy for ACTIVE)
ConnState conn_state_of(const HandleFields& f);

// What the session learnt of one live handle this interval.
struct HandleState {
    ConnState state = ConnState::unknown;
    int32_t backend_pid = 0;  // 0: not connected (PQbackendPID's 0)
    // Shared with every handle naming the same pair (NamePairs) and with
    // their report rows: 100,000 handles at scale name a few pairs.
    SharedText database, user;
    uint64_t state_since_ns = 0;  // when this state was first seen, unchanged since
};

}  // namespace connleak
