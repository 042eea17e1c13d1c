// The version-1 JSON snapshot (see README "JSON snapshot"): keys are a
// contract with scripts and dashboards; extend, never rename.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model.h"

namespace connleak {

nlohmann::ordered_json snapshot_to_json(const Snapshot& snap);

// The snapshot as a document (what --json FILE writes): the bytes of
// snapshot_document(snapshot_to_json(snap)), built one process at a time
// so that 100,000 listed connections never sit in memory as one tree.
std::string snapshot_text(const Snapshot& snap);

}  // namespace connleak
