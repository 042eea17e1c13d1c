// The cgroup v2 root, where connleak attaches its cgroup programs (the Unix
// connect hook; the TCP sock_ops program with --all): they then see every
// process.
#pragma once

#include <string>

namespace connleak {

// An fd of the cgroup v2 root (O_RDONLY | O_DIRECTORY | O_CLOEXEC): the
// mounted hierarchy's, or one mounted for the time of opening it (the fd
// keeps the cgroup). -1 on failure. `where` says which, for messages.
int open_cgroup2_root(std::string& where);

}  // namespace connleak
