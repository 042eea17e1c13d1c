// Defaults that more than one layer states, each defined once here. (The
// stack bytes copied per acquisition are the kernel side's compile-time
// CONNLEAK_STACK_SIZE, bpf/connleak.h, which userspace refers to.)
#pragma once

namespace connleak {

// --leak-after: a live connection this many seconds old is a leak.
constexpr double kDefaultLeakAfterS = 30;

}  // namespace connleak
