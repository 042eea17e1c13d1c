// PGconn's layout for one libpq file: its accessors' code read from the
// ELF file (where the symbolizer says each starts) and handed to
// derive_libpq_layout.
#pragma once

#include <string>

#include "libpq_handle.h"
#include "result.h"
#include "symbolizer.h"

namespace connleak {

// Fails with a reason when the file cannot be read or its accessors do not
// match libpq's known code (derive_libpq_layout).
Result<LibpqLayout> read_libpq_layout(Symbolizer& symbols, const std::string& path);

}  // namespace connleak
