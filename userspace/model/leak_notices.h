// Leak notices the way HikariCP's leak detection gives them: one when a live
// connection crosses --leak-after, with where it was acquired, and one when a
// connection so reported is finished after all. Pure: successive snapshots
// in, the notices they call for out; each at most once. Their text is
// output/notices_text.h.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "model.h"

namespace connleak {

// How long a finished handle was held, in ms, if known exactly (the
// kernel's release events); else the last age seen is given.
using HoldLookup = std::function<std::optional<double>(uint32_t pid, uint64_t conn, uint64_t acquired_ns)>;

class LeakNotices {
public:
    explicit LeakNotices(size_t keep = 1000) : keep_(keep) {}

    // The notices `snap` calls for, given every snapshot before it. They
    // are also kept (the latest `keep`) for recent().
    std::vector<Notice> update(const Snapshot& snap, const HoldLookup& hold = nullptr);

    const std::deque<Notice>& recent() const { return recent_; }
    size_t reported() const { return reported_.size(); }

private:
    using Key = std::tuple<uint32_t, uint64_t, uint64_t>;  // pid, conn, acquired_ns
    std::map<Key, Notice> reported_;                       // leak notices whose connection is live
    std::deque<Notice> recent_;
    size_t keep_;
    uint64_t seq_ = 0;
};

}  // namespace connleak
