// The bytes of the version-1 snapshot as a document: what --json FILE
// writes and GET /snapshot.json serves, the same for both.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace connleak {

inline std::string snapshot_document(const nlohmann::ordered_json& snapshot)
{
    return snapshot.dump(2) + "\n";
}

}  // namespace connleak
