// GET /metrics: Prometheus text exposition format 0.0.4 (DESIGN.md "HTTP"),
// built from the model's Snapshot directly: scraped most often, and at
// 1,000 processes it must answer in well under 100 ms, which going through
// the snapshot JSON does not.
//
// Cardinality is bounded: per running process the sites the snapshot lists
// (--top) and one "(other sites)" series holding the rest, so sums over
// sites are exact; every exited process is folded into its command name
// (pid="exited"), its sites bounded the same way.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "model.h"

namespace connleak {

// The site label of the series that holds the counts of unlisted sites.
inline constexpr const char* kOtherSites = "(other sites)";
// The pid label of exited processes, folded per command name.
inline constexpr const char* kExitedPid = "exited";

// A label value as the format wants it: \ " and newline escaped.
std::string prometheus_label_value(std::string_view value);
// HELP text: \ and newline escaped.
std::string prometheus_help_text(std::string_view text);

std::string prometheus_text(const Snapshot& snapshot, size_t top);

}  // namespace connleak
