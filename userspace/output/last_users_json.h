// Per last user, in the JSON snapshot: `last_users` (and
// `last_users_total`) on each process and at the top level, over every
// process by label. See model/last_users.h for what is counted.
#pragma once

#include <nlohmann/json.hpp>

#include "model.h"

namespace connleak {

void add_process_last_users(nlohmann::ordered_json& process, const ProcessReport& p);
void add_snapshot_last_users(nlohmann::ordered_json& snapshot, const Snapshot& snap);

}  // namespace connleak
