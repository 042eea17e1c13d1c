// Time as every output writes it, text and JSON alike.
#pragma once

#include <cstdint>
#include <string>

namespace connleak {

// RFC 3339 UTC, e.g. "2026-11-26T20:00:00Z".
std::string format_utc(int64_t unix_seconds);

}  // namespace connleak
