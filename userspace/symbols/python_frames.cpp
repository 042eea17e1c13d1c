// Python frames in native stacks (see python_frames.h).
#include "python_frames.h"

#include <map>
#include <set>

namespace connleak {

bool is_python_eval_frame(const std::string& name)
{
    static const std::string eval = "_PyEval_EvalFrameDefault+";
    return name.compare(0, eval.size(), eval) == 0;
}

std::vector<std::string> merge_python_frames(const std::vector<std::string>& native,
                                             const std::vector<NamedPythonFrame>& python)
{
    std::vector<std::string> out;
    out.reserve(native.size() + python.size());
    size_t next = 0;
    for (const std::string& n : native) {
        if (!is_python_eval_frame(n) || next >= python.size()) {
            out.push_back(n);
            continue;
        }
        while (next < python.size()) {
            const NamedPythonFrame& f = python[next++];
            out.push_back(f.name);
            if (f.entry)
                break;
        }
    }
    for (; next < python.size(); next++)
        out.push_back(python[next].name);
    return out;
}

std::vector<std::string> python_site_skip()
{
    return {
        // The interpreter and C extensions of drivers and FFI.
        // "func+0x1c (module)", or "module+0x1c" when the module has no symbols.
        R"((\(|^)(python3(\.\d+)?|libpython3\.[^)+ ]*|_psycopg[^)+ ]*|psycopg_c[^)+ ]*|libffi[^)+ ]*|_ctypes[^)+ ]*)(\)$|\+0x[0-9a-f]+$))",
        // The standard library (not what is installed beside it) and frozen modules.
        R"(/lib/python3(\.\d+)?/(?!(site|dist)-packages/)[^()]*:\d+\)$)",
        R"(\(<frozen [^>]*>(:\d+)?\)$)",
        // Drivers and pools.
        R"(/(site|dist)-packages/(psycopg2|psycopg|psycopg_pool|psycopg_c|sqlalchemy)/[^()]*\)$)",
    };
}

std::vector<std::string> site_labels(const std::vector<LabelInput>& stacks)
{
    std::vector<std::string> labels(stacks.size());
    auto frame = [&](size_t s, size_t up) -> const std::string* {
        const std::vector<std::string>& f = *stacks[s].frames;
        const size_t i = stacks[s].site + up;
        return i < f.size() ? &f[i] : nullptr;
    };
    std::map<std::string, std::vector<size_t>> by_site;
    for (size_t s = 0; s < stacks.size(); s++) {
        const std::string* site = frame(s, 0);
        labels[s] = site ? *site : "?";
        by_site[labels[s]].push_back(s);
    }
    for (const auto& [site, members] : by_site) {
        if (members.size() < 2)
            continue;
        for (size_t s : members) {
            // The outermost point where this stack first parts from another.
            size_t part = 0;
            for (size_t o : members) {
                if (o == s)
                    continue;
                size_t up = 1;
                for (;; up++) {
                    const std::string* a = frame(s, up);
                    const std::string* b = frame(o, up);
                    if (!a || !b || *a != *b)
                        break;
                }
                part = std::max(part, up);
            }
            if (const std::string* where = frame(s, part))
                labels[s] = *where + " \u2192 " + site;
        }
    }
    // Whatever still collides (stacks parting only inside the driver, or
    // at the same frame) is numbered.
    std::map<std::string, int> seen;
    for (std::string& l : labels)
        if (int n = ++seen[l]; n > 1)
            l += " #" + std::to_string(n);
    return labels;
}

}  // namespace connleak
