// format_duration: one readable duration for every text output, at each
// unit's bounds (where rounding could print "1000 ms" or "60.0 s").
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

#include "duration_text.h"

using namespace connleak;

namespace {
constexpr double kSec = 1000, kMin = 60 * kSec, kHour = 60 * kMin, kDay = 24 * kHour;
}

TEST_CASE("format_duration: milliseconds, one decimal below 10", "[duration]")
{
    CHECK(format_duration(0) == "0.0 ms");
    CHECK(format_duration(0.35) == "0.3 ms");  // 0.35 is 0.34999... in binary
    CHECK(format_duration(0.36) == "0.4 ms");
    CHECK(format_duration(9.94) == "9.9 ms");
    CHECK(format_duration(9.95) == "10 ms");
    CHECK(format_duration(850) == "850 ms");
    CHECK(format_duration(999.4) == "999 ms");
}

TEST_CASE("format_duration: seconds, one decimal below a minute", "[duration]")
{
    CHECK(format_duration(999.5) == "1.0 s");
    CHECK(format_duration(12345) == "12.3 s");
    CHECK(format_duration(17900) == "17.9 s");
    CHECK(format_duration(59949) == "59.9 s");
    CHECK(format_duration(59950) == "1 min 00 s");  // not "60.0 s"
}

TEST_CASE("format_duration: minutes, hours, days cut down, not rounded up", "[duration]")
{
    CHECK(format_duration(4 * kMin + 5 * kSec) == "4 min 05 s");
    CHECK(format_duration(183456.2) == "3 min 03 s");
    CHECK(format_duration(5 * kMin - 1) == "4 min 59 s");
    CHECK(format_duration(kHour - 1) == "59 min 59 s");
    CHECK(format_duration(kHour) == "1 h 00 min");
    CHECK(format_duration(2 * kHour + 3 * kMin + 59 * kSec) == "2 h 03 min");
    CHECK(format_duration(kDay - 1) == "23 h 59 min");
    CHECK(format_duration(kDay) == "1 d 00 h");
    CHECK(format_duration(3 * kDay + 4 * kHour + 59 * kMin) == "3 d 04 h");
}

TEST_CASE("format_duration: no number to show, and the widest texts", "[duration]")
{
    CHECK(format_duration(-1) == "-");
    CHECK(format_duration(std::nan("")) == "-");
    CHECK(format_duration(std::numeric_limits<double>::infinity()) == "-");
    CHECK(format_duration(1e15) == "-");  // its day count would not fit
    CHECK(format_duration(-0.0) == "0.0 ms");
    for (double ms : {kHour - 1, kDay - 1, 999 * kDay + 23 * kHour})
        CHECK(format_duration(ms).size() <= static_cast<size_t>(kDurationWidth));
    CHECK(format_duration(kHour - 1).size() == static_cast<size_t>(kDurationWidth));
}
