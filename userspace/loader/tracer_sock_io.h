// The connleak object's send and receive hooks (bpf/sock_io.bpf.h), loader
// side: what Tracer::load asks before loading.
#pragma once

struct connleak_bpf;

namespace connleak {

// A kernel without the sock_send_length/sock_recv_length tracepoints (before
// 6.4) loads the rest: the hooks are left out, idle times stay unknown.
void keep_socket_io_if_supported(connleak_bpf* skel);

}  // namespace connleak
