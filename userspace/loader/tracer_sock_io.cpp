// Tracer's part of the traffic hooks (tracer_sock_io.h, bpf/sock_io.bpf.h).
#include "tracer_sock_io.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bpf_util.h"
#include "clock.h"
#include "connleak.skel.h"
#include "connleak_loader.h"
#include "kernel_hz.h"
#include "sock_io.h"
#include "thread_without_signals.h"

namespace connleak {
namespace {

// The tracepoints stay attached at least this long after they were last
// found needed (each check reads the sock_io map).
// (CONNLEAK_TRAFFIC_CHECK_MS: another period, for tests.)
// A TCP socket's connect callback follows its record within microseconds.
constexpr uint64_t kSettleNs = 1000000000ULL;

uint64_t tracepoint_check_ns()
{
    const char* ms = getenv("CONNLEAK_TRAFFIC_CHECK_MS");
    return ms ? std::strtoull(ms, nullptr, 10) * 1000000ULL : 30ULL * 1000000000ULL;
}

// This process's network namespace cookie (SO_NETNS_COOKIE, 5.14+); 0 if unknown.
uint64_t own_netns_cookie()
{
    constexpr int kSoNetnsCookie = 71;
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    if (getsockopt(fd, SOL_SOCKET, kSoNetnsCookie, &cookie, &len) != 0)
        cookie = 0;
    close(fd);
    return cookie;
}

bool kernel_at_least(int major, int minor)
{
    utsname u{};
    int ma = 0, mi = 0;
    if (uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}

// Said when the hooks are attached (with socket tracking only).
bool hz_unknown = false;

}  // namespace

void keep_socket_io_if_supported(connleak_bpf* skel)
{
    const bool have = libbpf_find_vmlinux_btf_id("sock_send_length", BPF_TRACE_RAW_TP) > 0 &&
                      libbpf_find_vmlinux_btf_id("sock_recv_length", BPF_TRACE_RAW_TP) > 0;
    if (!have) {
        bpf_program__set_autoload(skel->progs.sock_send, false);
        bpf_program__set_autoload(skel->progs.sock_recv, false);
    }
    // BPF_SOCK_OPS_TSTAMP_SENDMSG_CB and SK_BPF_CB_FLAGS came in 6.15.
    const unsigned hz = kernel_hz();
    const uint64_t netns = own_netns_cookie();
    const bool ops = have && hz && netns && kernel_at_least(6, 15) && !getenv("CONNLEAK_NO_SOCK_OPS");
    hz_unknown = have && !hz && kernel_at_least(6, 15) && !getenv("CONNLEAK_NO_SOCK_OPS");
    skel->rodata->ns_per_jiffy = ops ? 1000000000ULL / hz : 0;
    skel->rodata->own_netns_cookie = netns;
    if (!ops) {
        bpf_program__set_autoload(skel->progs.sock_ops_io, false);
        bpf_program__set_autoload(skel->progs.tcp_recv_times, false);
    }
}

Result<std::unique_ptr<SocketIoHooks>> SocketIoHooks::attach(connleak_bpf* skel, bool whole_host)
{
    if (!bpf_program__autoload(skel->progs.sock_send))
        return Error{"the kernel has no sock_send_length tracepoint (6.4+): no idle times, no last users"};
    if (hz_unknown)
        std::fprintf(stderr, "connleak: warning: the kernel's CONFIG_HZ is unknown (no /proc/config.gz or "
                             "/boot/config-RELEASE): TCP traffic goes through the send/recv tracepoints, which every "
                             "process of the machine pays for\n");
    std::unique_ptr<SocketIoHooks> h(new SocketIoHooks(skel));
    if (bpf_program__autoload(skel->progs.sock_ops_io)) {
        // Without receive times sock_ops cannot stand in for the tracepoints.
        h->tcp_iter_ = bpf_program__attach_iter(skel->progs.tcp_recv_times, nullptr);
        if (h->tcp_iter_) {
            h->sock_ops_ =
                std::make_unique<SockOpsCgroups>(skel->progs.sock_ops_io, bpf_map__fd(skel->maps.sock_io_cgroups));
            if (whole_host && !h->sock_ops_->attach_root()) {
                h->sock_ops_.reset();
                bpf_link__destroy(h->tcp_iter_);
                h->tcp_iter_ = nullptr;
            }
        }
    }
    if (!h->sock_ops_) {
        // Every libpq socket needs the tracepoints: attached for good, as
        // the sock_ops program would set no socket's flag.
        std::lock_guard<std::mutex> lock(h->mutex_);
        if (auto s = h->attach_tracepoints(); !s)
            return s.error();
        return h;
    }
    h->on_demand_ = true;
    h->wake_ = ring_buffer__new(
        bpf_map__fd(skel->maps.io_wake),
        [](void* ctx, void*, size_t) {
            auto* self = static_cast<SocketIoHooks*>(ctx);
            std::lock_guard<std::mutex> lock(self->mutex_);
            if (auto s = self->attach_tracepoints(); !s)
                std::fprintf(stderr, "connleak: warning: %s\n", s.error().message.c_str());
            return 0;
        },
        h.get(), nullptr);
    if (!h->wake_)
        return Error{"cannot open the traffic hooks' wakeup ring: " + bpf_errstr(errno)};
    h->waker_ = thread_without_signals([self = h.get()] { self->wake_loop(); });
    return h;
}

SocketIoHooks::~SocketIoHooks()
{
    stop_ = true;
    if (waker_.joinable())
        waker_.join();
    ring_buffer__free(wake_);
    bpf_link__destroy(send_);
    bpf_link__destroy(recv_);
    bpf_link__destroy(tcp_iter_);
    sock_ops_.reset();
}

void SocketIoHooks::cover(uint32_t pid)
{
    if (sock_ops_)
        sock_ops_->cover(static_cast<pid_t>(pid));
}

void SocketIoHooks::forget(uint32_t pid)
{
    if (sock_ops_)
        sock_ops_->forget(static_cast<pid_t>(pid));
}

void SocketIoHooks::wake_loop()
{
    while (!stop_.load())
        ring_buffer__poll(wake_, 100);
}

void SocketIoHooks::set_live(bool live)
{
    uint32_t zero = 0;
    sock_io_hooks v{live ? 1u : 0u};
    bpf_map_update_elem(bpf_map__fd(skel_->maps.sock_io_hooks), &zero, &v, BPF_ANY);
}

Status SocketIoHooks::attach_tracepoints()
{
    if (send_)
        return Ok{};
    send_ = bpf_program__attach(skel_->progs.sock_send);
    if (!send_)
        return Error{"cannot attach tp_btf/sock_send_length: " + bpf_errstr(errno)};
    recv_ = bpf_program__attach(skel_->progs.sock_recv);
    if (!recv_) {
        const int err = errno;
        bpf_link__destroy(send_);
        send_ = nullptr;
        return Error{"cannot attach tp_btf/sock_recv_length: " + bpf_errstr(err)};
    }
    set_live(true);
    checked_ns_ = monotonic_ns();
    return Ok{};
}

void SocketIoHooks::detach_tracepoints()
{
    bpf_link__destroy(send_);
    bpf_link__destroy(recv_);
    send_ = recv_ = nullptr;
}

// A libpq socket the tracepoints serve: Unix, or TCP that sock_ops did not take.
bool SocketIoHooks::any_socket_needs_tracepoints(uint64_t made_before_ns) const
{
    bool needed = false;  // a batch at a time, no copy of the map (100,000 entries at scale)
    for_each_map_entry<uint64_t, sock_io>(bpf_map__fd(skel_->maps.sock_io), [&](uint64_t, const sock_io& io) {
        needed = needed || (!io.via_sock_ops && (!made_before_ns || io.created_ns + kSettleNs < made_before_ns));
    });
    return needed;
}

void SocketIoHooks::run_tcp_iterator()
{
    int fd = bpf_iter_create(bpf_link__fd(tcp_iter_));
    if (fd < 0)
        return;
    tcp_iterator_runs_++;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
}

void SocketIoHooks::before_report(bool sock_ops_sockets)
{
    if (!on_demand_)
        return;
    // The iterator walks every TCP socket of the namespace (the whole
    // established hash, ~1.7 ms a report here): only when one can be ours.
    if (sock_ops_sockets)
        run_tcp_iterator();
    std::lock_guard<std::mutex> lock(mutex_);
    const uint64_t now = monotonic_ns();
    if (now - checked_ns_ < tracepoint_check_ns())
        return;
    checked_ns_ = now;
    if (!send_) {
        // A socket no wakeup asked for: TCP whose connect callback never
        // ran the sock_ops program (outside the cgroups attached to, which
        // the kernel's check at its connect missed).
        if (any_socket_needs_tracepoints(now))
            if (auto s = attach_tracepoints(); !s)
                std::fprintf(stderr, "connleak: warning: %s\n", s.error().message.c_str());
        return;
    }
    // Live off first: a socket made after the map is read below finds it
    // off and wakes the thread, which attaches them again.
    set_live(false);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (any_socket_needs_tracepoints(0))
        set_live(true);
    else
        detach_tracepoints();
}

int Tracer::sock_io_map_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io);
}

int Tracer::sock_io_mark_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io_mark);
}

int Tracer::sock_io_hooks_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io_hooks);
}

int Tracer::io_wake_fd() const
{
    return bpf_map__fd(skel_->maps.io_wake);
}

int Tracer::sock_io_writes_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io_writes);
}

int Tracer::sock_io_cgroups_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io_cgroups);
}

Status Tracer::attach_socket_io(bool whole_host)
{
    if (io_hooks_)
        return Ok{};
    auto h = SocketIoHooks::attach(skel_, whole_host);
    if (!h)
        return h.error();
    io_hooks_ = std::move(h.value());
    return Ok{};
}

void Tracer::detach_socket_io()
{
    io_hooks_.reset();
}

void Tracer::cover_traffic(const std::vector<uint32_t>& pids)
{
    if (io_hooks_)
        for (uint32_t pid : pids)
            io_hooks_->cover(pid);
}

void Tracer::cover_traffic(const std::vector<RawProcess>& processes)
{
    if (!io_hooks_)
        return;
    for (const RawProcess& p : processes) {
        if (p.stats.exited_ns)
            io_hooks_->forget(p.pid);
        else
            io_hooks_->cover(p.pid);
    }
}

void Tracer::refresh_traffic(bool sock_ops_sockets)
{
    if (io_hooks_)
        io_hooks_->before_report(sock_ops_sockets);
}

uint64_t Tracer::tcp_iterator_runs() const
{
    return io_hooks_ ? io_hooks_->tcp_iterator_runs() : 0;
}

}  // namespace connleak
