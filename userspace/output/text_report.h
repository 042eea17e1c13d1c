// The plain text report printed each interval when stdout is not a live view.
#pragma once

#include <string>

#include "model.h"

namespace connleak {

// Exited processes that never touched libpq (quiet_helper) are left out,
// and named in one line at the end (quiet_processes_note).
std::string render_text_report(const Snapshot& snap);

// "not shown: 2 exited processes ...: ldconfig (pid 4321), ...", or "" when
// every process is shown. Names as the target chose them (escape them).
std::string quiet_processes_note(const Snapshot& snap);

// Without --server, connections held since before the attach are only a
// discrepancy, and "leaks 0" reads as all clear: "3 database connections
// predate the attach ...: --server DSN shows their age and state", or ""
// when no running process holds one. The text sink says it once.
std::string pre_attach_note(const Snapshot& snap);

}  // namespace connleak
