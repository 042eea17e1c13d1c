// Each interval, each live handle's state read from its process's memory
// (system/handle_reader) with the layout its libpq's own accessors give
// (symbols/libpq_layout_file), into RawState::handles. Remembers since when
// each handle has been in its state, and strings that never change.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "libpq_handle.h"
#include "model.h"
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

private:
    // The layout of the libpq `pid` has mapped, or null (said once per file).
    const LibpqLayout* layout_of(uint32_t pid);

    using HandleId = std::tuple<uint32_t, uint64_t, uint64_t>;  // pid, conn, acquired_ns
    struct Known {
        HandleState state;
        bool named = false;  // database and user read (they never change)
        uint64_t seen = 0;   // the annotate() that last read it
    };
    // One process's handles: read together, into raw.handles and `now`.
    void annotate_process(RawState& raw, uint32_t pid, const std::vector<uint64_t>& conns,
                          const std::vector<const RawConn*>& of_pid, const LibpqLayout& layout);
    Symbolizer symbols_{SymbolizerOptions{"", false}};
    std::map<std::pair<dev_t, ino_t>, std::optional<LibpqLayout>> layouts_;  // by libpq file
    std::map<uint32_t, std::pair<dev_t, ino_t>> file_of_pid_;
    // The live handles read by the last annotate, updated in place (not
    // built anew each interval: 100,000 of them at scale).
    std::map<HandleId, Known> known_;
    uint64_t generation_ = 0;
    uint64_t reads_ = 0, read_ns_ = 0, read_cpu_ns_ = 0, failed_ = 0;
};

}  // namespace connleak
