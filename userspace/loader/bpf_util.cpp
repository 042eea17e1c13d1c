// libbpf helpers both loaders share (see bpf_util.h).
#include "bpf_util.h"

#include <bpf/libbpf.h>
#include <system_error>
#include <thread>

namespace connleak {

std::string bpf_errstr(int err)
{
    char buf[128];
    libbpf_strerror(err, buf, sizeof(buf));  // either sign
    return buf;
}

std::vector<pid_t> probe_pids(const std::vector<uint32_t>& pids)
{
    if (pids.empty())
        return {-1};
    return std::vector<pid_t>(pids.begin(), pids.end());
}

void destroy_links(std::vector<bpf_link*>& links)
{
    // Each uprobe detach waits for the kernel (~80 ms on the bench VM): one
    // after the other, connleak's 20 probes took 1.8 s to let go. From a few
    // threads at once the waits partly overlap (1.45 s; the kernel
    // serialises the rest).
    constexpr size_t kThreads = 8;
    std::vector<std::thread> threads;
    size_t started = 0;
    for (; started < kThreads && started < links.size(); started++) {
        try {
            threads.emplace_back([&links, started] {
                for (size_t i = started; i < links.size(); i += kThreads)
                    bpf_link__destroy(links[i]);
            });
        } catch (const std::system_error&) {
            break;  // no thread: this one's share is destroyed below
        }
    }
    for (size_t t = started; t < kThreads; t++)
        for (size_t i = t; i < links.size(); i += kThreads)
            bpf_link__destroy(links[i]);
    for (std::thread& th : threads)
        th.join();
    links.clear();
}

}  // namespace connleak
