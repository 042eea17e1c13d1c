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
#include <utility>
#include <vector>

#include "model.h"

namespace connleak {

// How long a finished handle was held, in ms, if known exactly (the
// kernel's release events); else the last age seen is given.
using HoldLookup = std::function<std::optional<double>(uint32_t pid, uint64_t conn, uint64_t acquired_ns)>;

class LeakNotices {
public:
    explicit LeakNotices(size_t keep = 1000) : keep_(keep) {}
    // The reported rows point into origins_.
    LeakNotices(const LeakNotices&) = delete;
    LeakNotices& operator=(const LeakNotices&) = delete;

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
        mutable size_t uses = 0;  // the OriginRefs to it (the model's thread only)
    };
    // A counted pointer to an Origin of origins_ (which owns it, and lets
    // it go once unused): one pointer, a shared_ptr's half.
    class OriginRef {
    public:
        OriginRef() = default;
        explicit OriginRef(const Origin* o) : o_(o) { hold(); }
        OriginRef(const OriginRef& r) : o_(r.o_) { hold(); }
        OriginRef(OriginRef&& r) noexcept : o_(r.o_) { r.o_ = nullptr; }
        OriginRef& operator=(OriginRef r) noexcept
        {
            std::swap(o_, r.o_);
            return *this;
        }
        ~OriginRef()
        {
            if (o_)
                o_->uses--;
        }
        const Origin* operator->() const { return o_; }
        explicit operator bool() const { return o_ != nullptr; }

    private:
        void hold()
        {
            if (o_)
                o_->uses++;
        }
        const Origin* o_ = nullptr;
    };
    // A leak notice whose connection is live (100,000 at scale): a flat,
    // sorted row of 48 bytes, not a tree node with its own texts. Its key's
    // fields in place of a Key (a tuple's pid is padded to 8 bytes), the
    // thread and the pooled flag in the pid's word: a Linux thread id is at
    // most 2^22 (PID_MAX_LIMIT), 31 bits hold it. Was 56 (the tuple, tid
    // and flag after the ages), 64 with a shared_ptr to its origin.
    struct Reported {
        uint32_t pid = 0;
        uint32_t tid : 31;
        uint32_t pooled : 1;
        Reported() : tid(0), pooled(0) {}  // (no default member initializers for bit-fields before C++20)
        uint64_t conn = 0, acquired_ns = 0;
        double age_ms = 0;  // the last age seen
        double in_transaction_ms = 0;
        OriginRef origin;
        Key key() const { return Key{pid, conn, acquired_ns}; }
        bool operator<(const Reported& o) const { return key() < o.key(); }
    };

public:
    static constexpr size_t kReportedRowSize = sizeof(Reported);

private:
    OriginRef shared_origin(const std::string& comm, const SharedText& site, const Frames& frames);
    static Notice release_of(const Reported& leak);
    // Declared before the rows that point into it: destroyed after them.
    std::map<std::tuple<std::string, std::string, const void*>, Origin> origins_;
    std::vector<Reported> reported_;  // by key
    OriginRef last_origin_;  // shared_origin's latest answer
    std::deque<Notice> recent_;
    size_t keep_;
    uint64_t seq_ = 0;
};

}  // namespace connleak
