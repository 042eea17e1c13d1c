// One entry of the snapshot's processes[] written straight as text: the
// bytes of its nlohmann tree (json_output.cpp's process_entry) dumped with
// indent 2, without the tree. At 1,000 processes building each entry's
// tree, copying it to add the socket keys and dumping it was most of the
// time the JSON file took.
#pragma once

#include <cstddef>
#include <string>

#include "model.h"

namespace connleak {

// The entry with its first `listed` connections, as it reads `indent`
// spaces in (its closing brace there, its keys two more). Not with
// --server: the server keys join each connection's object in the tree.
void append_process_json(std::string& out, const ProcessReport& p, size_t listed, size_t indent);

}  // namespace connleak
