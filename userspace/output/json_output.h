// The version-1 JSON snapshot (see README "JSON snapshot"): keys are a
// contract with scripts and dashboards; extend, never rename.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model.h"

namespace connleak {

nlohmann::ordered_json snapshot_to_json(const Snapshot& snap);

}  // namespace connleak
