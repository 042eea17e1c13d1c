#include "process_tree.h"

#include <algorithm>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

namespace connleak {

std::vector<uint32_t> all_pids()
{
    std::vector<uint32_t> pids;
    DIR* dir = opendir("/proc");
    if (!dir)
        return pids;
    while (dirent* e = readdir(dir)) {
        char* end = nullptr;
        const unsigned long pid = std::strtoul(e->d_name, &end, 10);
        if (end != e->d_name && *end == '\0' && pid > 0 && pid <= UINT32_MAX)
            pids.push_back(static_cast<uint32_t>(pid));
    }
    closedir(dir);
    std::sort(pids.begin(), pids.end());
    return pids;
}

std::optional<uint32_t> parse_stat_ppid(const std::string& stat)
{
    const size_t close = stat.rfind(')');
    if (close == std::string::npos)
        return std::nullopt;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long long ppid = -1;
    if (!(rest >> state >> ppid) || ppid < 0 || ppid > UINT32_MAX)
        return std::nullopt;
    return static_cast<uint32_t>(ppid);
}

std::map<uint32_t, uint32_t> parent_links()
{
    std::map<uint32_t, uint32_t> parents;
    for (uint32_t pid : all_pids()) {
        std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        if (!std::getline(f, line))
            continue;  // exited meanwhile
        if (auto ppid = parse_stat_ppid(line))
            parents[pid] = *ppid;
    }
    return parents;
}

std::vector<uint32_t> descendants_in(const std::map<uint32_t, uint32_t>& parents, const std::vector<uint32_t>& roots)
{
    std::multimap<uint32_t, uint32_t> children;
    for (auto [pid, ppid] : parents)
        children.emplace(ppid, pid);
    std::set<uint32_t> seen(roots.begin(), roots.end()), found;
    std::vector<uint32_t> todo(roots.begin(), roots.end());
    while (!todo.empty()) {
        const uint32_t pid = todo.back();
        todo.pop_back();
        auto [from, to] = children.equal_range(pid);
        for (auto it = from; it != to; ++it)
            if (seen.insert(it->second).second) {  // a pid once: no loop on odd links
                found.insert(it->second);
                todo.push_back(it->second);
            }
    }
    return {found.begin(), found.end()};
}

std::vector<uint32_t> tree_tops(const std::map<uint32_t, uint32_t>& parents, const std::vector<uint32_t>& tree)
{
    const std::set<uint32_t> members(tree.begin(), tree.end());
    std::vector<uint32_t> tops;
    for (uint32_t pid : members) {
        auto parent = parents.find(pid);
        if (parent == parents.end() || parent->second == pid || !members.count(parent->second))
            tops.push_back(pid);
    }
    return tops;
}

std::vector<uint32_t> descendants(const std::vector<uint32_t>& roots)
{
    return descendants_in(parent_links(), roots);
}

}  // namespace connleak
