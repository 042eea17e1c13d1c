/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Traffic on libpq's sockets (see sock_io.h): tp_btf/sock_send_length and
 * tp_btf/sock_recv_length fire after every send and receive on every socket
 * of the machine, in the calling thread. Any other socket leaves at the
 * sock_io_mark pointer test; a libpq socket's entry gets the time; the
 * first send after a receive, while the handle is idle, sends the caller's
 * stack through the acquisition's capture path (send_acquire).
 * Included at the end of connleak.bpf.c. */
#pragma once

#include "sock_io_maps.bpf.h"

/* Set before load: the gap rule's threshold (sock_io.h). */
const volatile __u64 idle_gap_ns = SOCK_IO_IDLE_GAP_NS;

static __always_inline struct sock_io *io_of(struct sock *sk, int moved)
{
	__u64 key = (__u64)sk;

	/* Most sockets have no BPF storage at all: one load, no helper call. */
	if (moved <= 0 || !sk->sk_bpf_storage || !bpf_sk_storage_get(&sock_io_mark, sk, 0, 0))
		return NULL;
	return bpf_map_lookup_elem(&sock_io, &key);
}

/* A PGconn field of the traced process, or -1 when it cannot be read. */
static __always_inline __s64 pgconn_u32(__u64 conn, __u32 offset)
{
	__u32 v;

	if (bpf_probe_read_user(&v, sizeof(v), (void *)(conn + offset)))
		return -1;
	return v;
}

/* Whether this send begins a unit of work: the handle idle now (libpq's
 * own state, at the offsets its libpq file uses), or, without them, a
 * socket quiet for idle_gap_ns. */
static __always_inline bool begins_work(const struct sock_io *io, __u64 quiet_ns)
{
	if (io->xact_off == SOCK_IO_NO_OFFSET)
		return quiet_ns >= idle_gap_ns;
	if (io->status_off != SOCK_IO_NO_OFFSET && pgconn_u32(io->conn, io->status_off) != SOCK_IO_CONNECTION_OK)
		return false; /* still connecting (or broken): the handshake is nobody's work */
	return pgconn_u32(io->conn, io->xact_off) == SOCK_IO_PQTRANS_IDLE;
}

static __always_inline void begin_use(struct sock_io *io, __u64 now, __u64 quiet_ns)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct conn_key key = { .tgid = tgid, .conn = io->conn };
	struct conn_info info = {}, *live;
	struct proc_stats *ps;

	/* The owner only (a forked child writing to an inherited socket is
	 * not its handle's user); not inside a connect call (the handshake). */
	struct thread_call *tc;

	if (tgid != io->tgid)
		return;
	tc = thread_call_of(false);
	if (tc && tc->depth)
		return;
	if (!begins_work(io, quiet_ns))
		return;
	ps = traced_proc(tgid);
	if (!ps)
		return;
	io->use_ns = now;
	io->use_tid = tid;
	io->uses++;
	live = bpf_map_lookup_elem(&conns, &key);
	if (live)
		info = *live; /* start_ns: which acquisition of this PGconn */
	info.acquired_ns = now; /* EVENT_LAST_USE: the send's time (sock_io.use_ns) */
	info.tid = tid;
	/* The user's registers, as a uprobe would see them. The stack is always
	 * copied (never counted per stack id): userspace names the last user. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct stack_capture *cap = stack_size ? capture_stack(regs, tgid, tc ? &tc->walk_span : NULL) : NULL;

	if (cap)
		send_acquire(regs, ps, &key, &info, cap, EVENT_LAST_USE);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	struct sock_io *io = io_of(sk, ret);
	__u64 now, last;
	bool after_recv;

	if (!io)
		return 0;
	now = bpf_ktime_get_ns();
	after_recv = io->last_send_ns <= io->last_recv_ns;
	last = io->created_ns;
	if (io->last_send_ns > last)
		last = io->last_send_ns;
	if (io->last_recv_ns > last)
		last = io->last_recv_ns;
	io->last_send_ns = now;
	/* One message may take several sends (a long query, COPY data):
	 * only the first after the server's answer can begin anything. */
	if (after_recv)
		begin_use(io, now, now > last ? now - last : 0);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	struct sock_io *io = io_of(sk, ret);

	if (io)
		io->last_recv_ns = bpf_ktime_get_ns();
	return 0;
}
