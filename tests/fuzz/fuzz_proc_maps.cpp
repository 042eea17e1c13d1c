// /proc/PID/maps is written by the kernel, but its paths are names the
// target chose (any bytes but '\n'): parse_maps must take any text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "proc_maps.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string text(reinterpret_cast<const char*>(data), size);
    const std::vector<connleak::Mapping> maps = connleak::parse_maps(text);
    for (const connleak::Mapping& m : maps) {
        FUZZ_CHECK(m.start <= m.end);
        FUZZ_CHECK(m.path.find('\n') == std::string::npos);
        const std::string in_target = connleak::path_in_target(1, m);
        FUZZ_CHECK(in_target.empty() || in_target.compare(0, 8, "/proc/1/") == 0);
        if (m.start < m.end) {
            const connleak::Mapping* hit = connleak::find_mapping(maps, m.start);
            FUZZ_CHECK(hit && hit->start <= m.start && m.start < hit->end);
        }
    }
    return 0;
}
