// The TCP sock_ops program's cgroups (sock_ops_cgroups.h).
#include "sock_ops_cgroups.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf_util.h"
#include "cgroup2_root.h"
#include "process_cgroup.h"
#include "sock_io.h"

namespace connleak {
namespace {

// Links kept at most; the ids map has SOCK_IO_MAX_CGROUPS entries.
constexpr size_t kMaxLinks = 64;

}  // namespace

SockOpsCgroups::~SockOpsCgroups()
{
    for (auto& [path, link] : links_)
        bpf_link__destroy(link);
    if (root_fd_ >= 0)
        close(root_fd_);
}

bool SockOpsCgroups::open_root()
{
    if (root_fd_ < 0)
        root_fd_ = open_cgroup2_root(root_where_);
    return root_fd_ >= 0;
}

bool SockOpsCgroups::attach_root()
{
    if (!open_root())
        return false;
    bpf_link* link = bpf_program__attach_cgroup(prog_, root_fd_);
    if (!link)
        return false;
    links_["/"] = link;
    plan_.attached("/", {});
    cover_everything();
    return true;
}

void SockOpsCgroups::cover_everything()
{
    const uint64_t all = SOCK_IO_ALL_CGROUPS;
    const uint8_t one = 1;
    bpf_map_update_elem(covered_map_fd_, &all, &one, BPF_ANY);
    whole_host_ = true;
}

void SockOpsCgroups::not_covered(pid_t pid, const std::string& why)
{
    if (uncovered_++ == 0)
        std::fprintf(stderr,
                     "connleak: warning: PID %d: %s: its TCP traffic goes through the send/recv tracepoints, "
                     "which every process of the machine pays for\n",
                     static_cast<int>(pid), why.c_str());
}

void SockOpsCgroups::cover(pid_t pid)
{
    if (whole_host_ || !seen_.insert(pid).second)
        return;
    auto path = process_cgroup2_path(pid);
    if (!path) {
        if (kill(pid, 0) == 0)  // one that exited meanwhile needs nothing
            not_covered(pid, path.error().message);
        return;
    }
    if (!open_root())
        return not_covered(pid, "no cgroup v2 hierarchy");
    const std::string rel = path.value() == "/" ? "." : path.value().substr(1);
    int fd = openat(root_fd_, rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
        const int err = errno;
        if (fd >= 0)
            close(fd);
        return not_covered(pid, "cannot open its cgroup " + path.value() + ": " + bpf_errstr(err));
    }
    const uint64_t id = st.st_ino;  // a cgroup's id is its directory's inode number
    const CgroupCover::Step step = plan_.plan(path.value());
    if (!step.covered) {
        bpf_link* link = links_.size() - step.drop.size() < kMaxLinks ? bpf_program__attach_cgroup(prog_, fd) : nullptr;
        const int err = errno;
        if (!link) {
            close(fd);
            return not_covered(pid, links_.size() >= kMaxLinks ? "more cgroups than connleak attaches to"
                                                               : "cannot attach sock_ops to its cgroup " +
                                                                     path.value() + ": " + bpf_errstr(err));
        }
        // Below the new one, a socket would now run the program twice.
        for (const std::string& below : step.drop) {
            bpf_link__destroy(links_[below]);
            links_.erase(below);
        }
        links_[path.value()] = link;
        plan_.attached(path.value(), step.drop);
        if (path.value() == "/") {  // a traced process in the root: every cgroup is covered now
            close(fd);
            return cover_everything();
        }
    }
    close(fd);
    // The kernel's map: processes of this cgroup connect through sock_ops.
    if (ids_.count(id))
        return;
    const uint8_t one = 1;
    if (ids_.size() >= SOCK_IO_MAX_CGROUPS || bpf_map_update_elem(covered_map_fd_, &id, &one, BPF_ANY) != 0)
        return not_covered(pid, "more cgroups than connleak keeps");
    ids_.insert(id);
}

}  // namespace connleak
