// Per last user: how many live handles a stack last used, how many of them
// it holds checked out of a pool now, and the leaks charged to it (issue
// 13's "per last user"). Pure: counted from the ConnReports.
//
// - connections: live handles whose last user (last_used_site) it is.
// - checked_out: of those, pooled handles borrowed now: their state, read
//   from the handle, is in_transaction, in_error or busy. An idle pooled
//   handle is back in its pool (or, with an autocommit pool, borrowed but
//   idle on both sides: indistinguishable, not counted); connecting, broken
//   or unread ones are not counted either. A handle that is not pooled is
//   held by its acquirer for good: never checked out.
// - leaks: leaks among them. A pooled handle's leak is charged to its last
//   user (the borrower); one that is not pooled is a leak of its site (held
//   too long), listed here under whoever used it last.
// Handles with no known last user are one entry with site "", so the
// entries of a process add up to its live handles and leaks.
#pragma once

#include <cstddef>
#include <vector>

#include "model.h"

namespace connleak {

// Whether a handle counts as checked out of its pool (above).
bool checked_out(const ConnReport& c);

// Every last user of these live handles, by label, worst first: leaks,
// then checked_out, then connections; then by label, the unknown one last.
std::vector<LastUserReport> tally_last_users(const std::vector<ConnReport>& conns);

// The snapshot's totals (every process's last users, added up by label) and
// each list cut to `top` entries; *_total keep how many there were.
void bound_last_users(Snapshot& snap, size_t top);

}  // namespace connleak
