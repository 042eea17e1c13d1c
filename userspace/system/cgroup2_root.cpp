// The cgroup v2 root (cgroup2_root.h).
#include "cgroup2_root.h"

#include <cctype>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/mount.h>
#include <unistd.h>

namespace connleak {
namespace {

// "\040" in mountinfo paths.
std::string unescape_mount_path(const std::string& s)
{
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
            out += static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// The mount point of the cgroup v2 hierarchy's root, or "".
std::string cgroup2_root_mount()
{
    std::ifstream f("/proc/self/mountinfo");
    std::string line;
    while (std::getline(f, line)) {
        size_t dash = line.find(" - ");
        if (dash == std::string::npos)
            continue;
        std::istringstream post(line.substr(dash + 3)), pre(line.substr(0, dash));
        std::string fstype, id, parent, devno, root, mountpoint;
        post >> fstype;
        pre >> id >> parent >> devno >> root >> mountpoint;
        if (fstype == "cgroup2" && root == "/")
            return unescape_mount_path(mountpoint);
    }
    return "";
}

}  // namespace

int open_cgroup2_root(std::string& where)
{
    where = cgroup2_root_mount();
    if (!where.empty())
        return open(where.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char dir[] = "/tmp/connleak-cgroup2.XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    int fd = -1;
    if (mount("none", dir, "cgroup2", 0, nullptr) == 0) {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        umount2(dir, MNT_DETACH);
    }
    rmdir(dir);
    where = "cgroup2 (mounted for attaching)";
    return fd;
}

}  // namespace connleak
