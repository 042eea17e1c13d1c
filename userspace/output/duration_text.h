// A duration as every text output writes it: readable at any size, from a
// fraction of a millisecond to days. JSON and Prometheus keep their numbers.
#pragma once

#include <string>

namespace connleak {

// "0.4 ms", "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min", "3 d 04 h";
// "-" for a negative or non-finite value. At most kDurationWidth characters
// below 1000 days.
std::string format_duration(double ms);

constexpr int kDurationWidth = 11;  // "59 min 59 s", "23 h 59 min"

}  // namespace connleak
