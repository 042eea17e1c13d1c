// The connleak object's traffic hooks (bpf/sock_io.bpf.h), loader side.
//
// TCP sockets of libpq go through a sock_ops program on the cgroup v2
// directories of the traced processes (with --all, the root;
// sock_ops_cgroups.h), which the kernel calls at their sends only; before each report an
// iterator over the TCP sockets brings their receive times up to date.
// Unix sockets (and TCP where sock_ops cannot take them) need the
// sock_send_length/sock_recv_length tracepoints, which every socket of the
// machine pays for: they are attached when the first such libpq socket
// appears (the kernel wakes a thread here) and detached once none is left.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "result.h"
#include "sock_ops_cgroups.h"

struct connleak_bpf;
struct bpf_link;
struct ring_buffer;

namespace connleak {

// Before load: a kernel without the tracepoints (before 6.4) loads the
// rest, idle times stay unknown; without the sock_ops TX timestamping
// callbacks (before 6.15) or the kernel's HZ, TCP uses the tracepoints too.
void keep_socket_io_if_supported(connleak_bpf* skel);

class SocketIoHooks {
public:
    // whole_host: the sock_ops program on the cgroup v2 root at once; else
    // on the cgroups of the processes cover() is given.
    static Result<std::unique_ptr<SocketIoHooks>> attach(connleak_bpf* skel, bool whole_host);
    ~SocketIoHooks();
    SocketIoHooks(const SocketIoHooks&) = delete;
    SocketIoHooks& operator=(const SocketIoHooks&) = delete;

    // Before each report: TCP receive times; now and then, whether the
    // tracepoints are still needed.
    uint64_t tcp_iterator_runs() const { return tcp_iterator_runs_; }  // measurements
    void before_report(bool sock_ops_sockets);
    // A traced process: the sock_ops program over its cgroup (once per pid).
    void cover(uint32_t pid);
    void forget(uint32_t pid);  // exited

private:
    explicit SocketIoHooks(connleak_bpf* skel) : skel_(skel) {}
    Status attach_tracepoints();  // with mutex_ held
    void detach_tracepoints();    // with mutex_ held
    void set_live(bool live);
    // A libpq socket the tracepoints serve (made before made_before_ns,
    // monotonic, unless 0).
    bool any_socket_needs_tracepoints(uint64_t made_before_ns) const;
    void run_tcp_iterator();
    void wake_loop();

    connleak_bpf* skel_;
    std::unique_ptr<SockOpsCgroups> sock_ops_;  // TCP through sock_ops; null: the tracepoints
    bpf_link* tcp_iter_ = nullptr;
    bpf_link* send_ = nullptr;
    bpf_link* recv_ = nullptr;
    bool on_demand_ = false;  // tracepoints attached only while needed
    ring_buffer* wake_ = nullptr;
    std::thread waker_;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    uint64_t checked_ns_ = 0;
    uint64_t tcp_iterator_runs_ = 0;
};

}  // namespace connleak
