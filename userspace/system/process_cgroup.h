// A process's cgroup v2 directory (/proc/PID/cgroup's "0::/path" line),
// where the TCP sock_ops program is attached for it (tracer_sock_io.h).
#pragma once

#include <string>
#include <sys/types.h>

#include "result.h"

namespace connleak {

// The path of the cgroup v2 line ("0::/a/b" -> "/a/b") of a
// /proc/PID/cgroup text, or "" when it has none (cgroup v1 only).
std::string cgroup2_path(const std::string& proc_cgroup_text);

// The same, read for a process: relative to the cgroup2 root.
Result<std::string> process_cgroup2_path(pid_t pid);

}  // namespace connleak
