// Checks made before touching the kernel, so a missing privilege or feature
// is one line that says what to do, not a libbpf error dump.
#pragma once

#include "result.h"

namespace connleak {

// Root, or CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN) in the effective set.
Status check_privileges();

// CO-RE needs the running kernel's BTF.
Status check_kernel_btf();

}  // namespace connleak
