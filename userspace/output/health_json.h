// GET /health/detailed: the seed tracker's own JSON shape (DESIGN.md "HTTP"),
// so a dashboard made for the seed can point at connleak unchanged. Built
// from the version-1 snapshot JSON, the contract every key is added to.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>

namespace connleak {

// {"status", "timestamp", "checks": {"database_pool": {"checked_out",
// "tracking_stats", "tracking_discrepancy", "top_connection_users"}}}.
// Sites are merged by name over processes (a route served by several
// workers is one row, as the seed counted it), worst first, at most `top`.
nlohmann::ordered_json health_detailed_json(const nlohmann::ordered_json& snapshot, size_t top);

}  // namespace connleak
