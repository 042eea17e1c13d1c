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
    // What a leak notice's release notice repeats of it and of its site and
    // process: shared by every leak of that site.
    struct Origin {
        std::string comm;
        SharedText site;
        Frames frames = nullptr;
    };
    // A leak notice whose connection is live (100,000 at scale): a flat,
    // sorted row of 64 bytes, not a tree node with its own texts.
    struct Reported {
        Key key;
        double age_ms = 0;  // the last age seen
        double in_transaction_ms = 0;
        uint32_t tid = 0;
        bool pooled = false;
        std::shared_ptr<const Origin> origin;
        bool operator<(const Reported& o) const { return key < o.key; }
    };
    std::shared_ptr<const Origin> shared_origin(const std::string& comm, const SharedText& site, const Frames& frames);
    static Notice release_of(const Reported& leak);
    std::vector<Reported> reported_;  // by key
    std::map<std::tuple<std::string, std::string, const void*>, std::weak_ptr<const Origin>> origins_;
    std::shared_ptr<const Origin> last_origin_;  // shared_origin's latest answer
    std::deque<Notice> recent_;
    size_t keep_;
    uint64_t seq_ = 0;
};

}  // namespace connleak
