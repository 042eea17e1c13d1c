// Leak notices as text for people (stderr), the way HikariCP words its two
// messages. The notices themselves come from the model's LeakNotices.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "defaults.h"
#include "model.h"

namespace connleak {

// How notices are written for people (stderr).
struct NoticeTextOptions {
    double leak_after_s = kDefaultLeakAfterS;
    size_t frames_shown = 10;  // --stacks: frames of a site's stack, the first time it leaks
    bool full_stacks = false;  // --notice-stacks: every notice on its own, each leak with its whole stack
};

// The notices of one interval (update()'s result) as text for people, the
// way HikariCP words its two messages. One line per notice, the stack of a
// site the first time that site leaks (stacks_shown: sites already shown,
// kept by the caller across intervals), and the other notices of the same
// kind, process and site in this interval folded into one line ("and 9 more
// from the same site"). With full_stacks: each notice on its own, each leak
// with its whole stack. The JSON's notices have every frame either way.
std::string render_notices(const std::vector<Notice>& batch, const NoticeTextOptions& opts,
                           std::set<std::string>& stacks_shown);

// render_notices() across intervals: remembers the sites whose stack was shown.
class NoticeText {
public:
    std::string render(const std::vector<Notice>& batch, const NoticeTextOptions& opts)
    {
        return render_notices(batch, opts, stacks_shown_);
    }

private:
    std::set<std::string> stacks_shown_;  // sites whose stack was on stderr
};

// One notice for people: one line, then (leaks) up to `frames_shown`
// frames of the acquiring stack, indented.
std::string render_notice(const Notice& n, double leak_after_s, size_t frames_shown);

}  // namespace connleak
