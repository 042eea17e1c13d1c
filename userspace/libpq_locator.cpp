#include "libpq_locator.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <unistd.h>

#include "proc_maps.h"

namespace connleak {
namespace {

constexpr const char* kSoname = "libpq.so.5";

bool is_libpq(const std::string& path)
{
    const std::string base = path.substr(path.rfind('/') + 1);
    return base.rfind("libpq.so", 0) == 0;
}

std::string read_comm(uint32_t pid)
{
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(f, comm);
    return comm;
}

// "libpq.so.5 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libpq.so.5"
std::string from_ldconfig_cache()
{
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen("ldconfig -p 2>/dev/null", "r"), pclose);
    if (!p)
        return "";
    char line[4096];
    while (std::fgets(line, sizeof(line), p.get())) {
        std::string s(line);
        auto arrow = s.find("=> ");
        if (s.find(kSoname) == std::string::npos || arrow == std::string::npos || s.find("x86-64") == std::string::npos)
            continue;
        std::string path = s.substr(arrow + 3);
        while (!path.empty() && (path.back() == '\n' || path.back() == ' '))
            path.pop_back();
        return path;
    }
    return "";
}

}  // namespace

Result<std::string> libpq_of_process(uint32_t pid)
{
    auto maps = read_maps(pid);
    if (!maps)
        return Error{"no process with PID " + std::to_string(pid) + " (or its memory map is unreadable)"};
    for (const Mapping& m : *maps)
        if (is_libpq(m.path) && m.perms.find('x') != std::string::npos)
            return path_in_target(pid, m);
    return Error{"process " + std::to_string(pid) + " (" + read_comm(pid) +
                 ") has no libpq mapped; if it loads libpq later, name it with --libpq PATH"};
}

Result<std::string> system_libpq()
{
    if (const char* env = std::getenv("LD_LIBRARY_PATH")) {
        std::string dirs = env;
        size_t begin = 0;
        while (begin <= dirs.size()) {
            size_t end = dirs.find(':', begin);
            if (end == std::string::npos)
                end = dirs.size();
            std::string candidate = dirs.substr(begin, end - begin) + "/" + kSoname;
            if (end > begin && access(candidate.c_str(), R_OK) == 0)
                return candidate;
            begin = end + 1;
        }
    }
    if (std::string cached = from_ldconfig_cache(); !cached.empty() && access(cached.c_str(), R_OK) == 0)
        return cached;
    for (const char* dir : {"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib"}) {
        std::string candidate = std::string(dir) + "/" + kSoname;
        if (access(candidate.c_str(), R_OK) == 0)
            return candidate;
    }
    return Error{"no libpq found (install libpq5, or name it with --libpq PATH)"};
}

}  // namespace connleak
