#include "server_text.h"

#include <cinttypes>

#include "duration_text.h"
#include "safe_text.h"
#include "screen_layout.h"
#include "strfmt.h"

namespace connleak {

std::string server_cell(const ConnReport& c)
{
    if (!c.server)
        return "";
    if (!c.server->state)
        return "?";
    std::string s = safe_text(*c.server->state);
    if (c.server->state_age_ms >= 0)
        s += " " + format_duration(c.server->state_age_ms);
    return s;
}

bool server_alarm(const ConnReport& c)
{
    return c.server && idle_in_transaction(c.server->state);
}

std::string connection_cell(const ConnReport& c)
{
    return c.pre_attach ? "pre-attach" : fmt("0x%" PRIx64, c.conn);
}

std::string thread_cell(const ConnReport& c)
{
    return c.pre_attach ? "-" : fmt("%u", c.tid);
}

}  // namespace connleak
