// The memory of the report's rows (model/row_memory) on transparent huge
// pages: bump-allocated from 2 MiB chunks advised MADV_HUGEPAGE, each
// unmapped as soon as the last row in it is freed, so between reports it
// holds nothing (the resident memory figures stay those of the tables kept)
// while a report faults its ~20 MB of rows in ~10 huge pages instead of
// ~5,000 small ones (bench/: 20 MB in ~2.3 ms instead of ~11 ms here). A
// kernel without THP, or with it off, gives small pages: as before.
// CONNLEAK_NO_HUGE_ROWS: not installed (operator new), for the A/B.
#pragma once

#include <cstddef>
#include <cstdint>

namespace connleak {

// Installs the arena as the rows' memory (model/row_memory), unless
// CONNLEAK_NO_HUGE_ROWS is set. Once, before any report.
void install_row_arena();

struct RowArenaStats {
    uint64_t chunks_mapped = 0;  // chunks mapped so far
    size_t chunks_live = 0;      // mapped now
    size_t bytes_live = 0;       // rows allocated now, bytes
};
RowArenaStats row_arena_stats();

}  // namespace connleak
