#include "tracer_source.h"

#include <cerrno>
#include <csignal>
#include <fstream>

namespace connleak {

bool process_exists(uint32_t pid)
{
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string read_comm(uint32_t pid)
{
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(f, comm);
    return comm;
}

}  // namespace connleak
