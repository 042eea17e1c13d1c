// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* tp_floor: BPF programs that do nothing, on the tracepoints connleak's
 * traffic hooks use (tp_btf/sock_send_length, sock_recv_length), so that
 * attaching them measures what the kernel's dispatch to any program there
 * costs every send and receive of the machine: the floor under
 * bpf/sock_io.bpf.h's bystander cost. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_send, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_recv, struct sock *sk, int ret, int flags)
{
	return 0;
}
