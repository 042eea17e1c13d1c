// Leak notices as text for people (see notices_text.h).
#include "notices_text.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>

#include "duration_text.h"
#include "safe_text.h"
#include "shown_frames.h"
#include "strfmt.h"

namespace connleak {

std::string render_notice(const Notice& n, double leak_after_s, size_t frames_shown)
{
    // fmt, not a fixed buffer: a long site name must not cut the newline.
    std::string out;
    if (n.kind == "leak" && n.pooled)
        out = fmt("connleak: leak: pooled connection 0x%" PRIx64 " of pid %u (%s) borrowed by %s,"
                  " in a transaction for %s, never returned (leak-after %gs)\n",
                  n.conn, n.pid, safe_text(n.comm).c_str(), safe_text(n.site).c_str(),
                  format_duration(n.in_transaction_ms).c_str(), leak_after_s);
    else if (n.kind == "released" && n.pooled)
        out =
            fmt("connleak: released: pooled connection 0x%" PRIx64 " of pid %u (%s) borrowed by %s"
                " is back (out of its transaction, or finished) after %s\n",
                n.conn, n.pid, safe_text(n.comm).c_str(), safe_text(n.site).c_str(), format_duration(n.age_ms).c_str());
    else if (n.kind == "leak")
        out = fmt("connleak: leak: connection 0x%" PRIx64 " of pid %u (%s) on thread %u held %s"
                  " (leak-after %gs), acquired at %s\n",
                  n.conn, n.pid, safe_text(n.comm).c_str(), n.tid, format_duration(n.age_ms).c_str(), leak_after_s,
                  safe_text(n.site).c_str());
    else
        out = fmt("connleak: released: previously reported leaked connection 0x%" PRIx64
                  " of pid %u (%s) on thread %u was finished after %s, acquired at %s\n",
                  n.conn, n.pid, safe_text(n.comm).c_str(), n.tid, format_duration(n.age_ms).c_str(),
                  safe_text(n.site).c_str());
    if (n.kind == "leak" && n.frames && frames_shown) {
        size_t shown = 0;
        const std::vector<std::string_view> frames = shown_frames(*n.frames);
        for (std::string_view f : frames) {
            if (shown++ == frames_shown) {
                out += "    ... " + std::to_string(frames.size() - frames_shown) + " more\n";
                break;
            }
            out += "    at " + safe_text(f) + "\n";
        }
    }
    return out;
}

namespace {

// Remembered sites are few (one per leaking site); the bound only guards
// against a host with endless distinct sites. Past it, stacks show again.
constexpr size_t kMaxStacksShown = 65536;

// One duration when both ends print alike.
std::string duration_range(double low_ms, double high_ms)
{
    const std::string low = format_duration(low_ms), high = format_duration(high_ms);
    return low == high ? high : low + " to " + high;
}

// "and 9 more ... from the same site": the rest of a group on one line.
std::string fold_line(const std::vector<const Notice*>& rest)
{
    const Notice& n = *rest.front();
    double low = n.age_ms, high = n.age_ms;
    for (const Notice* r : rest) {
        low = std::min(low, r->age_ms);
        high = std::max(high, r->age_ms);
    }
    const char* noun = rest.size() == 1 ? "connection" : "connections";
    if (n.kind == "leak")
        return fmt("connleak: leak: and %zu more %s of pid %u (%s) from the same site, held %s\n", rest.size(), noun,
                   n.pid, safe_text(n.comm).c_str(), duration_range(low, high).c_str());
    return fmt("connleak: released: and %zu more previously reported %s of pid %u (%s) from the same site,"
               " finished after %s\n",
               rest.size(), noun, n.pid, safe_text(n.comm).c_str(), duration_range(low, high).c_str());
}

}  // namespace

std::string render_notices(const std::vector<Notice>& batch, const NoticeTextOptions& opts,
                           std::set<std::string>& stacks_shown)
{
    std::string out;
    if (opts.full_stacks) {
        for (const Notice& n : batch)
            out += render_notice(n, opts.leak_after_s, std::numeric_limits<size_t>::max());
        return out;
    }
    // Groups of the same kind, process and site, in the order they came.
    using GroupKey = std::tuple<std::string, uint32_t, std::string>;
    std::vector<GroupKey> order;
    std::map<GroupKey, std::vector<const Notice*>> groups;
    for (const Notice& n : batch) {
        GroupKey key{n.kind, n.pid, n.site};
        auto& g = groups[key];
        if (g.empty())
            order.push_back(key);
        g.push_back(&n);
    }
    for (const GroupKey& key : order) {
        const std::vector<const Notice*>& g = groups[key];
        const Notice& first = *g.front();
        size_t frames = 0;  // the stack once per site, with its first leak
        if (first.kind == "leak" && !stacks_shown.count(first.site)) {
            frames = opts.frames_shown;
            if (stacks_shown.size() >= kMaxStacksShown)
                stacks_shown.clear();
            stacks_shown.insert(first.site);
        }
        out += render_notice(first, opts.leak_after_s, frames);
        if (g.size() > 1)
            out += fold_line({g.begin() + 1, g.end()});
    }
    return out;
}

}  // namespace connleak
