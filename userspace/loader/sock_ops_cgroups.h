// Where the TCP sock_ops program (bpf/sock_io.bpf.h) is attached: without
// --all, the cgroup v2 directory of each traced process, so that the TCP
// connections of other services' processes never run it; with --all, the
// root. The kernel learns which cgroups are covered (sock_io_cgroups,
// bpf/sock_io.h): a traced process connecting from any other has its socket
// served by the send/recv tracepoints instead.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <sys/types.h>

#include "cgroup_cover.h"

struct bpf_program;
struct bpf_link;

namespace connleak {

class SockOpsCgroups {
public:
    SockOpsCgroups(bpf_program* prog, int covered_map_fd) : prog_(prog), covered_map_fd_(covered_map_fd) {}
    ~SockOpsCgroups();
    SockOpsCgroups(const SockOpsCgroups&) = delete;
    SockOpsCgroups& operator=(const SockOpsCgroups&) = delete;

    // --all: the root, and every cgroup covered. False if it cannot be.
    bool attach_root();
    // A traced process: its cgroup attached unless an attached one holds
    // it, and its id made known. Each pid is looked at once.
    void cover(pid_t pid);
    // An exited one: its pid looked at again if reused.
    void forget(pid_t pid) { seen_.erase(pid); }
    // Traced processes whose cgroup the program could not be put over
    // (attach failed, or past the bounds): their TCP takes the tracepoints.
    uint64_t uncovered() const { return uncovered_; }

private:
    bool open_root();
    void cover_everything();  // the root attached: no id needed
    void not_covered(pid_t pid, const std::string& why);

    bpf_program* prog_;
    int covered_map_fd_;
    int root_fd_ = -1;
    std::string root_where_;
    CgroupCover plan_;
    std::map<std::string, bpf_link*> links_;  // by path under the root
    std::set<uint64_t> ids_;                  // in the kernel's map
    std::set<pid_t> seen_;
    bool whole_host_ = false;
    uint64_t uncovered_ = 0;
};

}  // namespace connleak
