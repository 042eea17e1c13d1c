// The report's rows on huge-page chunks (system/row_arena.h): each chunk
// given back when its last row goes, small tables left to operator new,
// and the rows themselves no bigger than they need be.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "model.h"
#include "row_arena.h"

using connleak::ConnReport;
using connleak::ConnRows;
using connleak::RawConn;
using connleak::RawConns;
using connleak::row_arena_stats;

namespace {

// Installed once for the whole binary: rows made before by operator new
// are still given back to it (the arena lets what it did not map go).
void arena_on()
{
    static const bool once = [] {
        connleak::install_row_arena();
        return true;
    }();
    (void)once;
}

}  // namespace

TEST_CASE("a report's rows: fields without padding")
{
    // 224 bytes before (ninth session): bools and 32-bit fields between 64-bit ones.
    CHECK(sizeof(ConnReport) <= 200);
    CHECK(sizeof(RawConn) <= 88);  // 96 with the pid first
}

TEST_CASE("rows live in 2 MiB chunks, given back with their last row")
{
    arena_on();
    REQUIRE(connleak::row_memory() != nullptr);
    const auto before = row_arena_stats();
    {
        ConnRows a(1000), b(1000);  // ~200 KB each: one chunk holds both
        const auto during = row_arena_stats();
        CHECK(during.chunks_live == before.chunks_live + 1);
        CHECK(during.bytes_live >= before.bytes_live + 2 * 1000 * sizeof(ConnReport));
        // The first row of a fresh chunk sits on a huge page boundary.
        CHECK(reinterpret_cast<uintptr_t>(a.data()) % (2u << 20) == 0);
        CHECK(b.data() >= a.data() + a.size());
        a = ConnRows();
        CHECK(row_arena_stats().chunks_live == before.chunks_live + 1);  // b still in it
    }
    const auto after = row_arena_stats();
    CHECK(after.chunks_live == before.chunks_live);
    CHECK(after.bytes_live == before.bytes_live);
}

TEST_CASE("a table bigger than half a chunk gets chunks of its own; a small one, operator new")
{
    arena_on();
    const auto before = row_arena_stats();
    {
        RawConns all(100000);  // 8.8 MB: five chunks' worth, one mapping
        CHECK(row_arena_stats().chunks_live == before.chunks_live + 1);
        CHECK(reinterpret_cast<uintptr_t>(all.data()) % (2u << 20) == 0);
        all.back().pid = 7;  // all of it usable
        CHECK(all.back().pid == 7);
        RawConns few(3);  // 264 bytes: not worth a chunk
        CHECK(row_arena_stats().bytes_live == before.bytes_live + ((100000 * sizeof(RawConn) + 63) & ~size_t{63}));
    }
    CHECK(row_arena_stats().chunks_live == before.chunks_live);
    CHECK(row_arena_stats().bytes_live == before.bytes_live);
}

TEST_CASE("rows freed out of order, and copied, come back whole")
{
    arena_on();
    const auto before = row_arena_stats();
    {
        std::vector<ConnRows> many;
        for (int i = 0; i < 40; i++)  // ~4 MB of rows: three chunks
            many.emplace_back(500);
        CHECK(row_arena_stats().chunks_live >= before.chunks_live + 2);
        std::vector<ConnRows> copies(many.begin(), many.end());
        for (size_t i = 0; i < many.size(); i += 2)
            many[i] = ConnRows();
        for (const ConnRows& c : copies)
            CHECK(c.size() == 500);
    }
    CHECK(row_arena_stats().chunks_live == before.chunks_live);
    CHECK(row_arena_stats().bytes_live == before.bytes_live);
}
