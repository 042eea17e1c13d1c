// Python frames in a native stack: where they stand, which frame is the
// site, and labels that keep a process's sites apart. Pure.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace connleak {

struct NamedPythonFrame {
    std::string name;    // "qualname (file.py:LINE)"
    bool entry = false;  // the first frame its evaluation call ran
};

// A native frame that evaluates Python frames (_PyEval_EvalFrameDefault).
bool is_python_eval_frame(const std::string& native_name);

// The native stack (innermost first) with each evaluation frame replaced by
// the Python frames it ran: from the next one up to and including the next
// entry frame. Python frames left when the native frames run out (the
// native stack was cut short) go last; an evaluation frame with no Python
// frame left stays as it is.
std::vector<std::string> merge_python_frames(const std::vector<std::string>& native,
                                             const std::vector<NamedPythonFrame>& python);

// Glue that is never the site of a stack holding Python frames: the
// interpreter, the standard library, database drivers (psycopg2, psycopg,
// their C extensions), pools (SQLAlchemy, psycopg2.pool, psycopg_pool) and
// FFI (libffi, ctypes). Regular expressions on frame names.
std::vector<std::string> python_site_skip();

// One stack of a process, for labelling.
struct LabelInput {
    const std::vector<std::string>* frames = nullptr;  // innermost first
    size_t site = 0;                                   // index of the site frame
};

// A label per stack: the site frame's name, and where two stacks reach the
// same site frame, also the frame where they part ("audit_log (routes.py:31)
// → get_conn (db.py:6)"). Labels of the stacks given are all distinct.
std::vector<std::string> site_labels(const std::vector<LabelInput>& stacks);

}  // namespace connleak
