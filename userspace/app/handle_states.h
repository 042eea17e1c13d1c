// Each interval, the live handles' state read from their process's memory
// (system/handle_reader) with the layout their libpq's own accessors give
// (symbols/libpq_layout_file), into RawState::handles. Only the handles
// whose state can have changed are read again (model/handle_refresh: the
// socket tracer's view of their sockets, annotated before); the others keep
// their last read. Remembers since when each handle has been in its state,
// and strings that never change.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "handle_refresh.h"
#include "libpq_handle.h"
#include "model.h"
#include "name_pairs.h"
#include "symbolizer.h"

namespace connleak {

class HandleStates {
public:
    // Adds RawState::handles for the live processes' handles of `raw`.
    void annotate(RawState& raw);

    // What reading cost, for measurements (CONNLEAK_HANDLE_STATS).
    uint64_t reads() const { return reads_; }
    uint64_t read_ns() const { return read_ns_; }
    uint64_t read_cpu_ns() const { return read_cpu_ns_; }  // this thread's CPU time
    uint64_t failed_reads() const { return failed_; }
    uint64_t skipped() const { return skipped_; }  // handles whose last read stood
    size_t known_handles() const { return known_.size(); }

    using HandleId = std::tuple<uint32_t, uint64_t, uint64_t>;  // pid, conn, acquired_ns
    // What is kept of a live handle between intervals: 80 bytes in a
    // sorted vector (a tree node with two strings was ~216 bytes; 100,000
    // live handles at scale). Its state is its last read's (mark.state).
    struct Known {
        uint32_t pid = 0;
        uint32_t seen = 0;  // the annotate() that last had it live (low bits of generation_)
        uint64_t conn = 0, acquired_ns = 0;
        uint64_t state_since_ns = 0;  // HandleState's
        int32_t backend_pid = 0;
        NamePairs::Id names = 0;  // database and user read (they never change); 0: not yet
        HandleReadMark mark;  // what its last read saw (its state too), to tell whether to read it again

        HandleId id() const { return {pid, conn, acquired_ns}; }
    };

private:
    // The layout of the libpq `pid` has mapped, or null (said once per file).
    const LibpqLayout* layout_of(uint32_t pid);

    HandleState state_of(const Known& k) const;
    // One process's handles (raw.conns[begin, end)): those that need it
    // read together, into raw.handles and known_ (new ones into added_).
    void annotate_process(RawState& raw, uint32_t pid, size_t begin, size_t end, const LibpqLayout& layout);
    // known_ without the handles this annotate() did not see live, with added_.
    void settle_known();
    Symbolizer symbols_{SymbolizerOptions{"", false}};
    std::map<std::pair<dev_t, ino_t>, std::optional<LibpqLayout>> layouts_;  // by libpq file
    std::map<uint32_t, std::pair<dev_t, ino_t>> file_of_pid_;
    // The live handles read by the last annotate, by id, updated in place
    // (not built anew each interval); handles read for the first time go
    // to added_ and are merged in at the end.
    std::vector<Known> known_;
    uint64_t refresh_ns_ = kHandleRefreshNs;  // this annotate()'s safety-net period (handle_refresh_period)
    size_t cursor_ = 0;  // where in known_ the walk of this annotate() is (raw.conns is in key order)
    std::vector<Known> added_;
    NamePairs names_;
    uint32_t generation_ = 0;
    uint64_t reads_ = 0, read_ns_ = 0, read_cpu_ns_ = 0, failed_ = 0, skipped_ = 0;
};

}  // namespace connleak
