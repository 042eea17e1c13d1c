// Leak notices the way HikariCP's leak detection gives them: one when a live
// connection crosses --leak-after, with where it was acquired, and one when a
// connection so reported is finished after all. Pure: successive snapshots
// in, the notices they call for out; each at most once.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "model.h"

namespace connleak {

// How notices are written for people (stderr).
struct NoticeTextOptions {
    double leak_after_s = 30;
    size_t frames_shown = 10;  // --stacks: frames of a site's stack, the first time it leaks
    bool full_stacks = false;  // --notice-stacks: every notice on its own, each leak with its whole stack
};

// How long a finished handle was held, in ms, if known exactly (the
// kernel's release events); else the last age seen is given.
using HoldLookup = std::function<std::optional<double>(uint32_t pid, uint64_t conn, uint64_t acquired_ns)>;

// The notices of one interval (update()'s result) as text for people, the
// way HikariCP words its two messages. One line per notice, the stack of a
// site the first time that site leaks (stacks_shown: sites already shown,
// kept by the caller across intervals), and the other notices of the same
// kind, process and site in this interval folded into one line ("and 9 more
// from the same site"). With full_stacks: each notice on its own, each leak
// with its whole stack. The JSON's notices have every frame either way.
std::string render_notices(const std::vector<Notice>& batch, const NoticeTextOptions& opts,
                           std::set<std::string>& stacks_shown);

class LeakNotices {
public:
    explicit LeakNotices(size_t keep = 1000) : keep_(keep) {}

    // The notices `snap` calls for, given every snapshot before it. They
    // are also kept (the latest `keep`) for recent().
    std::vector<Notice> update(const Snapshot& snap, const HoldLookup& hold = nullptr);

    // The text of one interval's notices (render_notices), remembering
    // the sites whose stack was shown.
    std::string render(const std::vector<Notice>& batch, const NoticeTextOptions& opts)
    {
        return render_notices(batch, opts, stacks_shown_);
    }

    const std::deque<Notice>& recent() const { return recent_; }
    size_t reported() const { return reported_.size(); }

private:
    using Key = std::tuple<uint32_t, uint64_t, uint64_t>;  // pid, conn, acquired_ns
    std::map<Key, Notice> reported_;  // leak notices whose connection is live
    std::deque<Notice> recent_;
    std::set<std::string> stacks_shown_;  // sites whose stack was on stderr
    size_t keep_;
    uint64_t seq_ = 0;
};

// One notice for people: one line, then (leaks) up to `frames_shown`
// frames of the acquiring stack, indented.
std::string render_notice(const Notice& n, double leak_after_s, size_t frames_shown);

}  // namespace connleak
