// Durations for the text outputs (see duration_text.h).
#include "duration_text.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>

#include "strfmt.h"

namespace connleak {

std::string format_duration(double ms)
{
    // Nothing real lasts 10^15 ms (31,000 years), and a value far larger
    // would overflow the whole seconds below.
    if (!std::isfinite(ms) || ms < 0 || ms >= 1e15)
        return "-";
    if (ms == 0)
        ms = 0;  // -0.0 passes the test above: "0.0 ms", not "-0.0 ms"
    // Each bound is where the next unit's rounding would print the limit
    // ("1000 ms", "60.0 s"), so a value never shows as a full unit's worth.
    if (ms < 9.95)
        return fmt("%.1f ms", ms);  // mean holds of a local server
    if (ms < 999.5)
        return fmt("%.0f ms", ms);
    if (ms < 59950)
        return fmt("%.1f s", ms / 1000);
    // Past a minute, whole units, cut down rather than rounded up: an age of
    // 4 min 59.9 s has not yet been held 5 min.
    const uint64_t secs = std::max<uint64_t>(60, static_cast<uint64_t>(ms / 1000));
    if (secs < 3600)
        return fmt("%" PRIu64 " min %02" PRIu64 " s", secs / 60, secs % 60);
    if (secs < 86400)
        return fmt("%" PRIu64 " h %02" PRIu64 " min", secs / 3600, secs % 3600 / 60);
    return fmt("%" PRIu64 " d %02" PRIu64 " h", secs / 86400, secs % 86400 / 3600);
}

}  // namespace connleak
