// Cgroup directories to attach to (cgroup_cover.h).
#include "cgroup_cover.h"

#include <algorithm>

namespace connleak {

bool CgroupCover::holds(const std::string& dir, const std::string& path)
{
    if (dir == "/" || dir == path)
        return true;
    // "/a" holds "/a/b", not "/ab".
    return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

CgroupCover::Step CgroupCover::plan(const std::string& path) const
{
    Step step;
    for (const std::string& dir : attached_)
        if (holds(dir, path)) {
            step.covered = true;
            return step;
        }
    for (const std::string& dir : attached_)
        if (holds(path, dir))
            step.drop.push_back(dir);
    return step;
}

void CgroupCover::attached(const std::string& path, const std::vector<std::string>& dropped)
{
    for (const std::string& dir : dropped)
        attached_.erase(std::remove(attached_.begin(), attached_.end(), dir), attached_.end());
    attached_.push_back(path);
}

}  // namespace connleak
