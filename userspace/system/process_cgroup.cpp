// A process's cgroup v2 directory (process_cgroup.h).
#include "process_cgroup.h"

#include <fstream>
#include <sstream>

namespace connleak {

std::string cgroup2_path(const std::string& proc_cgroup_text)
{
    std::istringstream in(proc_cgroup_text);
    std::string line;
    while (std::getline(in, line))
        if (line.compare(0, 3, "0::") == 0 && line.size() > 3 && line[3] == '/') {
            // " (deleted)": the directory was removed under the process.
            const std::string deleted = " (deleted)";
            if (line.size() > deleted.size() &&
                line.compare(line.size() - deleted.size(), deleted.size(), deleted) == 0)
                return "";
            return line.substr(3);
        }
    return "";
}

Result<std::string> process_cgroup2_path(pid_t pid)
{
    const std::string file = "/proc/" + std::to_string(pid) + "/cgroup";
    std::ifstream f(file);
    std::stringstream text;
    text << f.rdbuf();
    if (!f)
        return Error{"cannot read " + file};
    std::string path = cgroup2_path(text.str());
    if (path.empty())
        return Error{file + " names no cgroup v2 directory"};
    return path;
}

}  // namespace connleak
