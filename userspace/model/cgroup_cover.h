// Which cgroup v2 directories a cgroup program must be attached to so that
// it runs once for every process of a set (the TCP sock_ops program,
// tracer_sock_io.h). A cgroup link runs for the cgroup's descendants too and
// links add up (multi): a directory under an attached one is covered
// already, and one above attached ones replaces them.
#pragma once

#include <string>
#include <vector>

namespace connleak {

class CgroupCover {
public:
    // What to do for a process in `path` ("/a/b", relative to the cgroup2
    // root; "/" is the root).
    struct Step {
        bool covered = false;           // an attached directory holds it: nothing to attach
        std::vector<std::string> drop;  // once `path` is attached: links to detach
    };
    Step plan(const std::string& path) const;

    // `path` is attached now and the `drop`s of its plan detached.
    void attached(const std::string& path, const std::vector<std::string>& dropped);

    const std::vector<std::string>& paths() const { return attached_; }

    // Whether `dir` is `path` or one of its ancestors.
    static bool holds(const std::string& dir, const std::string& path);

private:
    std::vector<std::string> attached_;
};

}  // namespace connleak
