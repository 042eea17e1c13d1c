// The plain text report printed each interval when stdout is not a live view.
#pragma once

#include <string>

#include "model.h"

namespace connleak {

std::string render_text_report(const Snapshot& snap);

}  // namespace connleak
