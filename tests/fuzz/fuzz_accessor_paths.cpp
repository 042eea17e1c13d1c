// The accessor decoder reads machine code from a libpq file the traced
// process maps (its bytes are the target's): any bytes must give paths or
// a refusal, never a crash, a hang or an unbounded result. The input is
// also cut into the six accessors for derive_libpq_layout.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "accessor_paths.h"
#include "fuzz_check.h"
#include "libpq_layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    auto paths = connleak::accessor_paths(data, size);
    if (paths) {
        FUZZ_CHECK(!paths.value().empty() && paths.value().size() <= 16);
        for (const connleak::AccessorPath& p : paths.value())
            FUZZ_CHECK(p.conditions.size() <= 64);
    }
    connleak::AccessorCode code;
    const auto& names = connleak::libpq_layout_accessors();
    const size_t part = size / names.size();
    for (size_t i = 0; i < names.size() && part; ++i)
        code[names[i]] = std::vector<uint8_t>(data + i * part, data + (i + 1) * part);
    auto layout = connleak::derive_libpq_layout(code);
    if (layout)  // a layout is only ever six distinct offsets
        FUZZ_CHECK(layout->status != layout->xact_status && layout->db_name != layout->pguser);
    return 0;
}
