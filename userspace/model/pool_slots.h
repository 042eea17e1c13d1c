// Pool slots lost: a pooled handle finished while it was borrowed (its last
// state read was in_transaction or in_error; a pool only ever closes
// handles it holds, and it rolls them back when they come back). The
// borrower closed it, or the garbage collector did: the pool does not
// know, and runs one connection short. Counted per site of the process.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "model.h"

namespace connleak {

class PoolSlots {
public:
    // Learns from `snap` (successive snapshots) and writes the counts so
    // far into its sites' and processes' pool_slots_lost.
    void update(Snapshot& snap);

private:
    using Key = std::tuple<uint32_t, uint64_t, uint64_t>;        // pid, conn, acquired_ns
    std::map<Key, std::string> borrowed_;                        // live at the last update, site
    std::map<std::pair<uint32_t, std::string>, uint64_t> lost_;  // (pid, site)
};

}  // namespace connleak
