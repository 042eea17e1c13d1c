// Idle time and last user of live handles, as the text report and the live
// view say them.
#pragma once

#include <string>

#include "model.h"

namespace connleak {

// "idle 1.5s, last user borrower_b (app.py:12)", "idle 850ms", or "" when
// neither is known.
std::string last_user_phrase(const ConnReport& c);

// The text report's lines for a live process: each live handle whose
// last user or idle time is known, oldest first, at most `max_rows`.
std::string last_users_text(const ProcessReport& p, size_t max_rows = 10);

}  // namespace connleak
