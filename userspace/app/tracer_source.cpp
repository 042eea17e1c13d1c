#include "tracer_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>

namespace connleak {

bool process_exists(uint32_t pid)
{
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string read_comm(uint32_t pid)
{
    // One open and read, no stream: every traced process's each report
    // (1,000 at scale, ~10 us each through an ifstream).
    char path[32];
    std::snprintf(path, sizeof(path), "/proc/%u/comm", pid);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return {};
    char buf[64];  // TASK_COMM_LEN is 16
    const ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n <= 0)
        return {};
    std::string comm(buf, static_cast<size_t>(n));
    if (auto nl = comm.find('\n'); nl != std::string::npos)
        comm.resize(nl);
    return comm;
}

}  // namespace connleak
