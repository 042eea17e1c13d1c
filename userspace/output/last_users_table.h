// The "last users" table of a process (model/last_users.h), as the text
// report and the live view show it: each last user with its live handles,
// pooled ones, those checked out now and its leaks.
#pragma once

#include <string>
#include <vector>

#include "model.h"

namespace connleak {

struct TableLine {
    std::string text;  // printable, two spaces in front
    bool heading = false;
    bool leak = false;  // a last user with leaks
    bool note = false;  // "... and N more"
};

// Heading, rows, and a note when --top cut the list; empty when the
// process has no known last user (nothing was seen using its handles).
std::vector<TableLine> last_users_lines(const ProcessReport& p);

// The text report's section: a title line and the table; "" when empty.
std::string last_users_table_text(const ProcessReport& p);

}  // namespace connleak
