#include "last_user_text.h"

#include <cinttypes>

#include "duration_text.h"
#include "safe_text.h"
#include "screen_layout.h"
#include "strfmt.h"

namespace connleak {

std::string last_user_phrase(const ConnReport& c)
{
    std::string out;
    if (c.idle_ms >= 0)
        out = "idle " + format_duration(c.idle_ms);
    if (!c.last_used_site.empty())
        out += (out.empty() ? "" : ", ") + std::string("last user ") + safe_text(c.last_used_site);
    return out;
}

std::string last_users_text(const ProcessReport& p, size_t max_rows)
{
    if (p.exited)
        return "";
    std::string rows;
    size_t shown = 0, known = 0;
    for (const ConnReport& c : p.connections) {
        const std::string phrase = last_user_phrase(c);
        if (phrase.empty())
            continue;
        known++;
        if (shown == max_rows)
            continue;
        shown++;
        rows += fmt("  %-18s %s\n", fmt("0x%" PRIx64, c.conn).c_str(), phrase.c_str());
    }
    if (rows.empty())
        return "";
    if (known > shown)
        rows += fmt("  ... and %zu more\n", known - shown);
    return "  live connections, idle time and last user:\n" + rows;
}

}  // namespace connleak
