// Tracer's part of the traffic hooks (bpf/sock_io.bpf.h).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>

#include "bpf_util.h"
#include "connleak.skel.h"
#include "connleak_loader.h"
#include "sock_io.h"
#include "tracer_sock_io.h"

namespace connleak {

void keep_socket_io_if_supported(connleak_bpf* skel)
{
    const bool have = libbpf_find_vmlinux_btf_id("sock_send_length", BPF_TRACE_RAW_TP) > 0 &&
                      libbpf_find_vmlinux_btf_id("sock_recv_length", BPF_TRACE_RAW_TP) > 0;
    if (!have) {
        bpf_program__set_autoload(skel->progs.sock_send, false);
        bpf_program__set_autoload(skel->progs.sock_recv, false);
    }
}

int Tracer::sock_io_map_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io);
}

int Tracer::sock_io_mark_fd() const
{
    return bpf_map__fd(skel_->maps.sock_io_mark);
}

Status Tracer::attach_socket_io()
{
    if (socket_io_attached_)
        return Ok{};
    if (!bpf_program__autoload(skel_->progs.sock_send))
        return Error{"the kernel has no sock_send_length tracepoint (6.4+): no idle times, no last users"};
    if (auto s = attach("tp_btf/sock_send_length", bpf_program__attach(skel_->progs.sock_send)); !s)
        return s;
    if (auto s = attach("tp_btf/sock_recv_length", bpf_program__attach(skel_->progs.sock_recv)); !s)
        return s;
    socket_io_attached_ = true;
    return Ok{};
}

}  // namespace connleak
