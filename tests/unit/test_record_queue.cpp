// The records between the ring-draining thread and the handling one
// (record_queue.h): in order, bounded, and what passes the bound counted.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "record_queue.h"

using connleak::RecordQueue;

namespace {
std::string record(uint32_t kind, uint32_t tgid, size_t size)
{
    std::string r(size, 'x');
    std::memcpy(&r[0], &kind, 4);
    std::memcpy(&r[4], &tgid, 4);
    for (size_t i = 8; i < size; i++)
        r[i] = static_cast<char>('a' + (i + kind) % 26);
    return r;
}

uint64_t dropped_of(const RecordQueue& q, uint32_t pid)
{
    auto it = q.dropped().find(pid);
    return it == q.dropped().end() ? 0 : it->second;
}

std::vector<std::string> take_all(RecordQueue& q)
{
    std::vector<std::string> out;
    for (const auto& block : q.take())
        block->for_each([&](const void* data, size_t size) { out.emplace_back(static_cast<const char*>(data), size); });
    return out;
}
}  // namespace

TEST_CASE("record queue keeps records in order until taken")
{
    RecordQueue q(1000);
    const std::string a = record(1, 10, 100), b = record(2, 11, 301);
    REQUIRE(q.push(a.data(), a.size()));
    REQUIRE(q.push(b.data(), b.size()));
    CHECK(q.bytes() == 112 + 312);  // each with its 8-byte header, padded to 8
    auto got = take_all(q);
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a);
    CHECK(got[1] == b);
    CHECK(q.bytes() == 0);
    CHECK(q.peak_bytes() == 424);
    CHECK(take_all(q).empty());
}

TEST_CASE("record queue counts what passes its bound per process, and takes the rest")
{
    RecordQueue q(1000);
    const std::string big = record(1, 10, 600), small = record(1, 20, 384), one_more = record(3, 20, 1);
    const std::string tail = record(1, 20, 8);
    REQUIRE(q.push(big.data(), big.size()));
    CHECK_FALSE(q.push(big.data(), big.size()));  // 1200 > 1000
    REQUIRE(q.push(small.data(), small.size()));  // exactly 1000
    CHECK_FALSE(q.push(tail.data(), tail.size()));
    CHECK(dropped_of(q, 10) == 1);
    CHECK(dropped_of(q, 20) == 1);
    CHECK(dropped_of(q, 30) == 0);
    // One the kernel sends only once passes the bound.
    const std::string once = record(4, 30, 64);
    REQUIRE(q.push(once.data(), once.size(), false));
    CHECK(dropped_of(q, 30) == 0);
    CHECK(q.bytes() == 1072);
    CHECK(q.dropped().size() == 2);
    CHECK(take_all(q).size() == 3);
    REQUIRE(q.push(big.data(), big.size()));  // room again once taken
    CHECK(q.peak_bytes() == 1072);
    q.forget(10);
    CHECK(dropped_of(q, 10) == 0);
    // Too short to say whose: counted against pid 0, never queued.
    CHECK_FALSE(q.push(one_more.data(), 4));
    CHECK(dropped_of(q, 0) == 1);
}

TEST_CASE("record queue spans blocks, and takes records larger than a block")
{
    RecordQueue q(64u << 20);
    std::vector<std::string> want;
    // Stack copies of a few KiB, then one of 64 KiB and a record of more
    // than a block: over three blocks, order kept, every byte intact.
    for (uint32_t i = 0; i < 700; i++)
        want.push_back(record(i, 1000 + i, 3000 + i % 13));
    want.push_back(record(7, 7, 65536 + 200));
    want.push_back(record(8, 8, RecordQueue::kBlockBytes + 5));
    want.push_back(record(9, 9, 9));
    for (const std::string& r : want)
        REQUIRE(q.push(r.data(), r.size()));
    CHECK(take_all(q) == want);
}
