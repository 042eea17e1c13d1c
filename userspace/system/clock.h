// The clock the kernel side stamps events with.
#pragma once

#include <cstdint>

namespace connleak {

// CLOCK_MONOTONIC in ns, the clock bpf_ktime_get_ns() reads.
uint64_t monotonic_ns();

// CPU time of the calling thread in ns (what a step cost, whatever else runs).
uint64_t thread_cpu_ns();

}  // namespace connleak
