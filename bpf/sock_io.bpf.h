/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Traffic on libpq's sockets (see sock_io.h), two ways in:
 *
 * - TCP: a sock_ops program (sock_ops_io) on the traced processes' cgroup
 *   v2 directories (the root with --all; sock_ops_cgroups.h). At a
 *   libpq socket's connect it asks the kernel for TX timestamping callbacks
 *   on that socket only (SK_BPF_CB_TX_TIMESTAMPING, Linux 6.15+); the
 *   kernel then calls it at each sendmsg of that socket, in the sending
 *   thread, and every other socket of the machine pays one flag test. The
 *   receive side has no such callback: "after a receive" is the socket's
 *   byte count moving, and the time of the last receive is the socket's
 *   own (icsk_ack.lrcvtime, jiffies), read at each send and, for the
 *   report, by an iterator over the TCP sockets (tcp_recv_times).
 * - Unix sockets (and TCP where sock_ops cannot do it, or a traced process
 *   connects from a cgroup it is not over: sock_ops_covers_current): tp_btf/
 *   sock_send_length and sock_recv_length fire after every send and
 *   receive on every socket of the machine, in the calling thread. Any
 *   other socket leaves at the sock_io_mark pointer test. Userspace
 *   attaches them only while it needs them (Tracer::attach_socket_io).
 *
 * Either way a libpq socket's entry gets the time, and the first send
 * after a receive, while the handle is idle, takes the caller's stack
 * through the acquisition's capture: its id kept in the entry (sent once per
 * process and stack), or, not walkable yet, a copy (send_acquire).
 * Included at the end of connleak.bpf.c. */
#pragma once

#include "sock_io_maps.bpf.h"

/* Set before load: the gap rule's threshold (sock_io.h). */
const volatile __u64 idle_gap_ns = SOCK_IO_IDLE_GAP_NS;

static __always_inline struct sock_io *io_of(struct sock *sk, int moved)
{
	__u64 key = (__u64)sk;

	/* Most sockets have no BPF storage at all: one load, no helper call. */
	struct sock_io *io;

	if (moved <= 0 || !sk->sk_bpf_storage || !bpf_sk_storage_get(&sock_io_mark, sk, 0, 0))
		return NULL;
	io = bpf_map_lookup_elem(&sock_io, &key);
	return io && !io->via_sock_ops ? io : NULL;
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
	io->use_stack = 0; /* before the time: never an older use's stack with this one's time */
	io->use_ns = now;
	io->use_tid = tid;
	io->uses++;
	/* The user's registers, as a uprobe would see them. A stack the kernel
	 * walked is named by its id in this entry, sent once per process; one it
	 * could not walk yet goes as a copy, which teaches userspace its steps. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct stack_capture *cap = stack_size ? capture_stack(regs, tgid, tc ? &tc->use_walk : NULL) : NULL;

	if (!cap)
		return;
	if (cap->id && stack_entry(ps, tgid, 0, cap, EVENT_USE_STACK)) {
		io->use_stack = cap->id;
		return;
	}
	live = bpf_map_lookup_elem(&conns, &key);
	if (live)
		info = *live; /* start_ns: which acquisition of this PGconn */
	info.acquired_ns = now; /* EVENT_LAST_USE: the send's time (sock_io.use_ns) */
	info.tid = tid;
	send_acquire(regs, ps, &key, &info, cap, EVENT_LAST_USE);
}

/* A send that moved bytes. One message may take several sends (a long
 * query, COPY data): only the first after the server's answer can begin
 * anything. */
static __always_inline void on_send(struct sock_io *io, __u64 now, bool after_recv)
{
	__u64 last = io->created_ns;

	if (io->last_send_ns > last)
		last = io->last_send_ns;
	if (io->last_recv_ns > last)
		last = io->last_recv_ns;
	io->last_send_ns = now;
	if (after_recv)
		begin_use(io, now, now > last ? now - last : 0);
	note_io_write();
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	struct sock_io *io = io_of(sk, ret);

	if (io)
		on_send(io, bpf_ktime_get_ns(), io->last_send_ns <= io->last_recv_ns);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	struct sock_io *io = io_of(sk, ret);

	if (io) {
		io->last_recv_ns = bpf_ktime_get_ns();
		note_io_write();
	}
	return 0;
}

/* ---- TCP through sock_ops ---- */

#define SOCK_IO_SOL_SOCKET 1

/* Set before load: nanoseconds per jiffy (1e9 / CONFIG_HZ); 0: unknown,
 * and then TCP sockets stay with the tracepoints. */
const volatile __u64 ns_per_jiffy = 0;
/* Set before load: connleak's network namespace, the only one its TCP
 * iterator sees; a socket of another (a container's) keeps the tracepoints. */
const volatile __u64 own_netns_cookie = 0;

/* The time of the socket's last received data, if it received any since
 * the last time this was set: icsk_ack.lrcvtime is the jiffy it arrived
 * in. Not before the send that preceded it (a jiffy is coarser than
 * that order). */
static __always_inline void tcp_note_recv(struct sock_io *io, struct tcp_sock *tp, __u64 now)
{
	__u64 bytes = tp->bytes_received, age, at;

	if (bytes == io->tcp_rcv_timed)
		return;
	io->tcp_rcv_timed = bytes;
	age = (__u64)((__u32)bpf_jiffies64() - tp->inet_conn.icsk_ack.lrcvtime) * ns_per_jiffy;
	at = now > age ? now - age : 0;
	if (at < io->last_send_ns)
		at = io->last_send_ns;
	if (at > io->last_recv_ns)
		io->last_recv_ns = at;
	note_io_write();
}

SEC("sockops")
int sock_ops_io(struct bpf_sock_ops *ops)
{
	struct bpf_sock *bsk;
	struct tcp_sock *tp;
	struct sock_io *io;
	__u64 key, now, bytes;
	bool after_recv;

	if (ops->op != BPF_SOCK_OPS_TCP_CONNECT_CB && ops->op != BPF_SOCK_OPS_TSTAMP_SENDMSG_CB)
		return 1;
	/* Marked at TCP_SYN_SENT (sockets.bpf.c), just before this connect
	 * callback, when libpq of a traced process connects it. */
	bsk = ops->sk;
	barrier_var(bsk); /* one load: the verifier's null check holds for it */
	if (!bsk || !bpf_sk_storage_get(&sock_io_mark, bsk, 0, 0))
		return 1;
	/* The socket's address, the key: a helper rather than the kfunc
	 * bpf_cast_to_kern_ctx, which would keep the whole object from loading
	 * on kernels before 6.2. */
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;
	key = (__u64)tp;
	io = bpf_map_lookup_elem(&sock_io, &key);
	if (!io)
		return 1;
	if (ops->op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		int flags = SK_BPF_CB_TX_TIMESTAMPING;

		if (ns_per_jiffy && bpf_get_netns_cookie(ops) == own_netns_cookie &&
		    bpf_setsockopt(ops, SOCK_IO_SOL_SOCKET, SK_BPF_CB_FLAGS, &flags, sizeof(flags)) == 0)
			io->via_sock_ops = 1;
		else
			need_io_tracepoints();
		note_io_write();
		return 1;
	}
	if (!io->via_sock_ops)
		return 1;
	now = bpf_ktime_get_ns();
	bytes = tp->bytes_received;
	after_recv = bytes != io->tcp_rcv_at_send || !io->last_send_ns;
	io->tcp_rcv_at_send = bytes;
	tcp_note_recv(io, tp, now);
	on_send(io, now, after_recv);
	return 1;
}

/* Run by userspace before each report: the receive times of libpq's TCP
 * sockets handled by sock_ops (their receives call nothing). A TCP
 * iterator walks the sockets of connleak's own network namespace only, so
 * sock_ops takes only those (own_netns_cookie). Outputs nothing. */
SEC("iter/tcp")
int tcp_recv_times(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	struct sock_io *io;
	__u64 key;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp || !bpf_sk_storage_get(&sock_io_mark, tp, 0, 0))
		return 0;
	key = (__u64)tp;
	io = bpf_map_lookup_elem(&sock_io, &key);
	if (io && io->via_sock_ops)
		tcp_note_recv(io, tp, bpf_ktime_get_ns());
	return 0;
}
