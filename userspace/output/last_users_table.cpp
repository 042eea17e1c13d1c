#include "last_users_table.h"

#include <algorithm>
#include <cinttypes>

#include "screen_layout.h"
#include "strfmt.h"

namespace connleak {
namespace {

constexpr const char* kUnknown = "(not known)";

std::string label_of(const LastUserReport& u)
{
    return u.site.empty() ? kUnknown : printable(u.site);
}

std::string padded(const std::string& s, size_t width)
{
    return s + std::string(width > text_width(s) ? width - text_width(s) : 0, ' ');
}

}  // namespace

std::vector<TableLine> last_users_lines(const ProcessReport& p)
{
    std::vector<TableLine> lines;
    if (std::none_of(p.last_users.begin(), p.last_users.end(), [](const LastUserReport& u) { return !u.site.empty(); }))
        return lines;
    size_t width = text_width("LAST USER");
    for (const LastUserReport& u : p.last_users)
        width = std::max(width, text_width(label_of(u)));
    lines.push_back(
        {"  " + padded("LAST USER", width) + fmt(" %11s %6s %11s %6s", "CONNECTIONS", "POOLED", "CHECKED OUT", "LEAKS"),
         true});
    for (const LastUserReport& u : p.last_users) {
        TableLine l;
        l.text =
            "  " + padded(label_of(u), width) +
            fmt(" %11" PRIu64 " %6" PRIu64 " %11" PRIu64 " %6" PRIu64, u.connections, u.pooled, u.checked_out, u.leaks);
        l.leak = u.leaks > 0;
        lines.push_back(std::move(l));
    }
    if (p.last_users_total > p.last_users.size()) {
        TableLine l;
        const size_t more = p.last_users_total - p.last_users.size();
        l.text = fmt("  ... and %zu more last user%s (--top)", more, more == 1 ? "" : "s");
        l.note = true;
        lines.push_back(std::move(l));
    }
    return lines;
}

std::string last_users_table_text(const ProcessReport& p)
{
    const std::vector<TableLine> lines = last_users_lines(p);
    if (lines.empty())
        return "";
    // What "checked out" means only where a pool is: jargon to a C client's
    // reader, whose handles are never checked out.
    const bool pooled = std::any_of(p.last_users.begin(), p.last_users.end(),
                                    [](const LastUserReport& u) { return u.pooled > 0; });
    std::string out = pooled ? "  last users (checked out: pooled handles borrowed now, in a transaction or busy):\n"
                             : "  last users:\n";
    for (const TableLine& l : lines) {
        std::string text = l.text;
        while (!text.empty() && text.back() == ' ')
            text.pop_back();
        out += text + "\n";
    }
    return out;
}

}  // namespace connleak
