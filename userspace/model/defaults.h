// Defaults that more than one layer states, each defined once here. (The
// stack bytes copied per acquisition are the kernel side's compile-time
// CONNLEAK_STACK_SIZE, bpf/connleak.h, which userspace refers to.)
#pragma once

#include <cstddef>

namespace connleak {

// --leak-after: a live connection this many seconds old is a leak.
constexpr double kDefaultLeakAfterS = 30;

// --connections: live handles the JSON snapshot lists per process (the
// oldest, leaks first), so 100,000 live handles do not make a 20 MB snapshot.
constexpr size_t kDefaultConnectionsShown = 100;

// --connections-max: live handles the JSON snapshot lists in all processes
// together (the oldest first): the list of 1,000 processes with 100 each
// takes about half a megabyte, and their whole snapshot 3 MB, not 55 MB.
constexpr size_t kDefaultConnectionsListedMax = 1000;

}  // namespace connleak
