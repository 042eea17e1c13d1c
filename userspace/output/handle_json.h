// What was read of each libpq handle, in the JSON snapshot: state,
// backend_pid, database, user and pooled on each connection (null where
// the handle could not be read), counts by state and pool slots lost on
// sites and processes, pooled on notices.
#pragma once

#include <nlohmann/json.hpp>

#include "model.h"

namespace connleak {

void add_handle_keys(nlohmann::ordered_json& conn, const ConnReport& c);
void add_state_counts(nlohmann::ordered_json& entry, const std::map<std::string, uint64_t>& states,
                      uint64_t pool_slots_lost);
void add_notice_pool_keys(nlohmann::ordered_json& notice, const Notice& n);

}  // namespace connleak
