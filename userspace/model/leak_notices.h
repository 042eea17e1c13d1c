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
#include <memory>
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
    // What of a leak notice its release notice repeats, kept per leaked
    // handle (100,000 at scale): its texts shared with the other notices
    // of its site and process, not copied into each.
    struct Reported {
        uint32_t tid = 0;
        bool pooled = false;
        double age_ms = 0;  // the last age seen
        double in_transaction_ms = 0;
        std::shared_ptr<const std::string> comm, site;
        Frames frames = nullptr;
    };
    std::shared_ptr<const std::string> shared_text(const std::string& s);
    Notice release_of(const Key& key, const Reported& leak) const;
    std::map<Key, Reported> reported_;  // leak notices whose connection is live
    std::map<std::string, std::weak_ptr<const std::string>> texts_;
    std::deque<Notice> recent_;
    size_t keep_;
    uint64_t seq_ = 0;
};

}  // namespace connleak
