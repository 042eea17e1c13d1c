// The records between the ring-draining thread and the handling one
// (record_queue.h): in order, bounded, and what passes the bound counted.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>

#include "record_queue.h"

using connleak::RecordQueue;

namespace {
std::string record(uint32_t kind, uint32_t tgid, size_t size)
{
    std::string r(size, 'x');
    std::memcpy(&r[0], &kind, 4);
    std::memcpy(&r[4], &tgid, 4);
    return r;
}
}  // namespace

TEST_CASE("record queue keeps records in order until taken")
{
    RecordQueue q(1000);
    const std::string a = record(1, 10, 100), b = record(2, 11, 300);
    REQUIRE(q.push(a.data(), a.size()));
    REQUIRE(q.push(b.data(), b.size()));
    CHECK(q.bytes() == 400);
    auto got = q.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == a);
    CHECK(got[1] == b);
    CHECK(q.bytes() == 0);
    CHECK(q.peak_bytes() == 400);
    CHECK(q.take().empty());
}

TEST_CASE("record queue counts what passes its bound per process, and takes the rest")
{
    RecordQueue q(1000);
    const std::string big = record(1, 10, 600), small = record(1, 20, 400), one_more = record(3, 20, 1);
    const std::string tail = record(1, 20, 8);
    REQUIRE(q.push(big.data(), big.size()));
    CHECK_FALSE(q.push(big.data(), big.size()));  // 1200 > 1000
    REQUIRE(q.push(small.data(), small.size()));  // exactly 1000
    CHECK_FALSE(q.push(tail.data(), tail.size()));
    CHECK(q.dropped(10) == 1);
    CHECK(q.dropped(20) == 1);
    CHECK(q.dropped(30) == 0);
    CHECK(q.take().size() == 2);
    REQUIRE(q.push(big.data(), big.size()));  // room again once taken
    CHECK(q.peak_bytes() == 1000);
    q.forget(10);
    CHECK(q.dropped(10) == 0);
    // Too short to say whose: counted against pid 0, never queued.
    CHECK_FALSE(q.push(one_more.data(), 4));
    CHECK(q.dropped(0) == 1);
}
