#include "preflight.h"

#include <fstream>
#include <string>
#include <unistd.h>

namespace connleak {
namespace {

constexpr int kCapSysAdmin = 21;
constexpr int kCapPerfmon = 38;
constexpr int kCapBpf = 39;

// The effective capability mask from /proc/self/status ("CapEff: 000001ff...").
unsigned long long effective_caps()
{
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("CapEff:", 0) == 0)
            return std::stoull(line.substr(7), nullptr, 16);
    return 0;
}

bool has(unsigned long long caps, int cap)
{
    return caps & (1ULL << cap);
}

}  // namespace

Status check_privileges()
{
    if (geteuid() == 0)
        return Ok{};
    const unsigned long long caps = effective_caps();
    if (has(caps, kCapSysAdmin) || (has(caps, kCapBpf) && has(caps, kCapPerfmon)))
        return Ok{};
    return Error{"loading BPF programs needs root (or CAP_BPF and CAP_PERFMON): run with sudo"};
}

Status check_kernel_btf()
{
    if (access("/sys/kernel/btf/vmlinux", R_OK) == 0)
        return Ok{};
    return Error{"this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): connleak needs a kernel built "
                 "with CONFIG_DEBUG_INFO_BTF=y"};
}

}  // namespace connleak
