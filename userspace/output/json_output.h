// The version-1 JSON snapshot (see README "JSON snapshot"): keys are a
// contract with scripts and dashboards; extend, never rename.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "model.h"

namespace connleak {

nlohmann::ordered_json snapshot_to_json(const Snapshot& snap);

// The snapshot as a document (what --json FILE writes): the bytes of
// snapshot_document(snapshot_to_json(snap)), built one process at a time
// so that 100,000 listed connections never sit in memory as one tree.
std::string snapshot_text(const Snapshot& snap);
// The same bytes in pieces of about 1 MiB, each handed to `put` in order.
void write_snapshot_text(const Snapshot& snap, const std::function<void(std::string_view piece)>& put);

}  // namespace connleak
