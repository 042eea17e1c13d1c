// PGconn's field offsets learnt from libpq itself: the code of its exported
// accessors (PQstatus, PQtransactionStatus, PQbackendPID, PQsocket, PQdb,
// PQuser) decoded and checked against what each is documented to return.
// A build whose code does not match gets no layout (and connleak no
// state), never a guess. PQpass is never looked at.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "libpq_handle.h"
#include "result.h"

namespace connleak {

// The machine code of each accessor, by name, from its first byte (a
// little past its end does no harm).
using AccessorCode = std::map<std::string, std::vector<uint8_t>>;

// The accessors the layout is derived from (PQsocket is optional).
const std::vector<std::string>& libpq_layout_accessors();

// Fails, saying which accessor and why, unless every required accessor's
// paths are exactly the expected ones (for each of its branch outcomes,
// the expected return value) and they agree with each other on the status
// field. The sock offset is left unset if PQsocket alone does not match.
Result<LibpqLayout> derive_libpq_layout(const AccessorCode& code);

}  // namespace connleak
