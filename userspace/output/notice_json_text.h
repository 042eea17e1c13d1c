// The snapshot's notices[] written straight as text: the bytes of their
// nlohmann trees (json_output.cpp's notice_json with its pool keys) dumped
// with indent 2. The snapshot keeps the latest 1,000 notices, written every
// interval: as trees they were a good part of the JSON file's time at scale.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "model.h"

namespace connleak {

// The array as it reads `indent` spaces in (its closing bracket there).
void append_notices_json(std::string& out, const std::vector<Notice>& notices, size_t indent);

}  // namespace connleak
