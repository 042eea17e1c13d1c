#include "libpq_locator.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <sys/stat.h>
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
    if (!maps) {
        // Say which: gone, or there but its map may not be read (ptrace
        // access to it is denied, as for a PID 1 outside our namespace).
        const std::string path = "/proc/" + std::to_string(pid) + "/maps";
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        const int err = fd < 0 ? errno : EIO;
        if (fd >= 0)
            close(fd);
        if (err == ENOENT || err == ESRCH)
            return Error{"no process with PID " + std::to_string(pid)};
        return Error{"cannot read the memory map of process " + std::to_string(pid) + " (" + read_comm(pid) + "), " +
                     path + ": " + std::strerror(err)};
    }
    for (const Mapping& m : *maps)
        if (is_libpq(m.path) && m.perms.find('x') != std::string::npos)
            return path_in_target(pid, m);
    const std::string comm = read_comm(pid);
    // A PostgreSQL server process (its backends are named postgres too):
    // the user named the database, not a client of it.
    if (comm == "postgres" || comm == "postmaster")
        return Error{"process " + std::to_string(pid) + " (" + comm +
                     ") is a PostgreSQL server process, not a client: name the application's processes "
                     "(connleak traces libpq, the client library), or use --all"};
    return Error{"process " + std::to_string(pid) + " (" + comm +
                 ") has no libpq mapped; if it loads libpq later, name it with --libpq PATH"};
}

Status check_libpq_file(const std::string& path, const DefinesFunction& defines)
{
    // O_NONBLOCK: opening a FIFO for reading would wait for a writer.
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return Error{std::strerror(errno)};
    struct stat st;
    const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    unsigned char magic[4] = {};
    const bool elf = regular && pread(fd, magic, sizeof(magic), 0) == sizeof(magic) &&
                     std::memcmp(magic,
                                 "\x7f"
                                 "ELF",
                                 sizeof(magic)) == 0;
    close(fd);
    if (!regular)
        return Error{"not a regular file (libpq is a shared library, e.g. /usr/lib/x86_64-linux-gnu/libpq.so.5)"};
    if (!elf)
        return Error{"not an ELF file (libpq is a shared library, e.g. /usr/lib/x86_64-linux-gnu/libpq.so.5)"};
    std::string missing;
    for (const char* function : {"PQconnectStart", "PQfinish"})
        if (!defines(path, function))
            missing += std::string(missing.empty() ? "" : ", ") + function;
    if (!missing.empty())
        return Error{"not libpq: it defines no " + missing};
    return Ok{};
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
