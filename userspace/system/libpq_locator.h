// Which libpq file to put the probes on.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "result.h"

namespace connleak {

// The libpq the process has mapped, as a path openable from here (through
// /proc/PID/root or /proc/PID/map_files). Fails when the process is gone or
// has no libpq mapped.
Result<std::string> libpq_of_process(uint32_t pid);

// Whether an ELF file defines a function (the symbols layer answers).
using DefinesFunction = std::function<bool(const std::string& path, const char* function)>;

// Whether `path` can be probed as libpq: a regular file (a FIFO or device
// would block or mean nothing), an ELF, defining libpq's connect and finish
// functions. Opens nothing that could block.
Status check_libpq_file(const std::string& path, const DefinesFunction& defines);

// The libpq a launched command would load: LD_LIBRARY_PATH first, then the
// dynamic linker's cache (ldconfig -p), then the usual directories.
Result<std::string> system_libpq();

}  // namespace connleak
