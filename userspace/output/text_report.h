// The plain text report printed each interval when stdout is not a live view.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "model.h"

namespace connleak {

// The sites whose stack a run of text reports has printed: (pid, site) to
// a digest of its frames. A report printed every 2 s into a log repeated
// every site's stack each time (a hundred lines a report for 10 sites).
using StacksPrinted = std::map<std::pair<uint32_t, std::string>, uint64_t>;

// Exited processes that never touched libpq (quiet_helper) are left out,
// and named in one line at the end (quiet_processes_note). With `printed`,
// a site's stack is printed the first time only (again when it changes),
// and entries of processes no longer listed are dropped from it.
std::string render_text_report(const Snapshot& snap, StacksPrinted* printed = nullptr);

// "not shown: 2 exited processes ...: ldconfig (pid 4321), ...", or "" when
// every process is shown. Names as the target chose them (escape them).
std::string quiet_processes_note(const Snapshot& snap);

// Without --server, connections held since before the attach are only a
// discrepancy, and "leaks 0" reads as all clear: "3 database connections
// predate the attach ...: --server DSN shows their age and state", or ""
// when no running process holds one. The text sink says it once.
std::string pre_attach_note(const Snapshot& snap);

// `report` (render_text_report's) with pre_attach_note's line under its
// header line; false (unchanged) when there is nothing to say.
bool add_pre_attach_note(std::string& report, const Snapshot& snap);

// The database sockets running processes hold since before the attach: the
// count pre_attach_note and the live view's line say.
uint64_t pre_attach_sockets(const Snapshot& snap);

}  // namespace connleak
