// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* connleak sockets: who connected which socket, in traced processes.
 *
 * - TCP (IPv4, IPv6): tp_btf/inet_sock_set_state. CLOSE -> SYN_SENT runs in
 *   the connecting thread (connect()), so the owner is taken there and
 *   only there; later changes (ESTABLISHED, CLOSE_WAIT, closing) often run
 *   in softirq, where the current task is anyone: they are matched by the
 *   struct sock pointer alone.
 * - Unix stream sockets: a cgroup sock_addr program on connect() of AF_UNIX
 *   sockets (BPF_CGROUP_UNIX_CONNECT, kernel >= 6.7), on the cgroup v2 root.
 *   It runs before the connect; whether it succeeded, and when the socket
 *   closes, userspace reads from /proc and sock_diag (no exact cheap kernel
 *   hook for a Unix close is usable here: kprobes, fentry and LSM are not).
 * - PQconnectPoll entry/return: the PGconn whose connect is running on a
 *   thread. libpq opens every server socket inside PQconnectPoll (connect,
 *   async connect, reset, multi-host fallback), so a socket connected there
 *   belongs to that PGconn, exactly.
 *
 * The traced-process filter is common.bpf.h's `procs` map, shared with
 * connleak.bpf.c (the loader reuses its fd). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "common.bpf.h"
#include "sockets.h"
#include "sock_io_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SOCK_STREAM_TYPE 1

/* Sized by userspace from --max-conns (every live handle may hold a
 * socket). Not preallocated: a record costs its memory only while it
 * exists, so room for 131,072 costs nothing until used. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, SOCKETS_MAX_SOCKS);
	__type(key, __u64); /* struct sock * */
	__type(value, struct sock_rec);
} socks SEC(".maps");

/* Bumped after every insert into, change of and delete from socks:
 * userspace reads the map again only when it moved (100,000 records are
 * ~0.1 s to read and convert). */
volatile __u64 socks_changes;

/* Per thread: its latest PQconnectPoll call (poll_running() tells whether
 * it still runs). Task storage: found with one helper call, freed with the
 * thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct poll_call);
} polls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct sock_stats);
} sock_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_SOCKS);
	__type(key, struct exit_key);
	__type(value, __u8);
} exit_held SEC(".maps");

/* --db-socket paths (zero-padded): Unix sockets outside libpq worth a record. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_DB_PATHS);
	__type(key, char[SOCKETS_PATH_LEN]);
	__type(value, __u8);
} db_paths SEC(".maps");

/* A mark on the TCP sockets that have a record: state changes of every
 * other socket of the machine end at one pointer test (sk->sk_bpf_storage)
 * instead of a hash lookup. Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} recorded SEC(".maps");

/* One record at a time is built here, not on the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_rec);
} scratch SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline bool traced(__u32 tgid)
{
	return traced_proc(tgid) != NULL;
}

/* The thread's PQconnectPoll call if it is still running, else NULL.
 * Only its entry is probed (a return probe would cost every call a second
 * trap): it runs while the thread is deeper in the stack than its entry
 * and the call's return address is still in its slot. Once it returned,
 * its caller's next call writes another return address there; a uretprobe
 * of someone else's on PQconnectPoll puts its trampoline there, and it
 * goes when the call returns. */
static __always_inline const struct poll_call *poll_running(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct poll_call *c = bpf_task_storage_get(&polls, task, 0, 0);
	struct pt_regs *regs;
	__u64 ret = 0;

	if (!c || !c->sp)
		return NULL;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs || regs->sp >= c->sp)
		return NULL;
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)c->sp))
		return NULL;
	if (ret == c->ret)
		return c;
	/* Direct loads (no helper call): the other sockets of the thread pay this. */
	struct mm_struct *mm = task->mm;
	struct xol_area *xol = mm ? mm->uprobes_state.xol_area : NULL;

	return xol && ret == xol->vaddr ? c : NULL;
}

static __always_inline struct sock_rec *fresh_rec(__u64 pid_tgid, const struct poll_call *call)
{
	__u32 zero = 0, tid = (__u32)pid_tgid;
	struct sock_rec *r = bpf_map_lookup_elem(&scratch, &zero);

	if (!r)
		return NULL;
	__builtin_memset(r, 0, sizeof(*r));
	r->tgid = pid_tgid >> 32;
	r->tid = tid;
	r->conn = call ? call->conn : 0;
	r->connect_ns = bpf_ktime_get_ns();
	return r;
}

static __always_inline __u64 sock_inode(struct sock *sk)
{
	struct socket *sock = BPF_CORE_READ(sk, sk_socket);

	if (!sock)
		return 0;
	return BPF_CORE_READ(container_of(sock, struct socket_alloc, socket), vfs_inode.i_ino);
}

/* Returns 0 once stored, else counts the drop. */
static __always_inline int store(__u64 sk, struct sock_rec *r)
{
	if (bpf_map_update_elem(&socks, &sk, r, BPF_ANY) == 0) {
		__sync_fetch_and_add(&socks_changes, 1);
		return 0;
	}
	struct sock_stats zero = {}, *st = lookup_or_init(&sock_stats, &r->tgid, &zero);

	if (st)
		__sync_fetch_and_add(&st->dropped, 1);
	return -1;
}

/* A libpq socket: an entry for the send and receive hooks (sock_io.bpf.h),
 * and its mark. `sk` as the program has it (struct sock or bpf_sock). */
static __always_inline void track_io(__u64 key, void *sk, const struct sock_rec *r,
				     const struct poll_call *call)
{
	struct sock_io io = { .tgid = r->tgid, .conn = r->conn, .created_ns = r->connect_ns };
	__u64 layout = call ? call->layout : SOCK_IO_UNKNOWN_LAYOUT;

	if (!r->conn)
		return;
	if (!layout) /* no cookie (a kernel without them): unknown */
		layout = SOCK_IO_UNKNOWN_LAYOUT;
	io.status_off = layout >> 32;
	io.xact_off = (__u32)layout;
	if (bpf_map_update_elem(&sock_io, &key, &io, BPF_ANY)) {
		struct sock_stats zero = {}, *st = lookup_or_init(&sock_stats, &r->tgid, &zero);

		if (st)
			__sync_fetch_and_add(&st->io_dropped, 1);
		return;
	}
	note_io_write();
	bpf_sk_storage_get(&sock_io_mark, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	/* TCP: connleak's sock_ops program takes it at its connect callback
	 * (or asks for the tracepoints itself), if attached over this task's
	 * cgroup; else (it moved, the attach failed) the tracepoints do. */
	if (r->family == SOCKETS_AF_UNIX || !sock_ops_covers_current())
		need_io_tracepoints();
}

SEC("uprobe")
int BPF_KPROBE(connect_poll_enter, void *conn)
{
	__u64 sp = PT_REGS_SP(ctx);
	struct proc_stats *ps = traced_proc(bpf_get_current_pid_tgid() >> 32);
	struct poll_call *c;

	if (!ps)
		return 0;
	/* Userspace reads a connecting handle's state again only after a
	 * poll: marked in the filter's entry just found, no second lookup. */
	ps->last_poll_ns = bpf_ktime_get_ns();
	c = bpf_task_storage_get(&polls, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		return 0;
	c->sp = 0; /* not running until all of it is written */
	c->conn = (__u64)conn;
	/* The cookie: where this libpq file keeps status and xactStatus. */
	c->layout = bpf_get_attach_cookie(ctx);
	c->ret = 0;
	bpf_probe_read_user(&c->ret, sizeof(c->ret), (void *)sp); /* at entry: the return address */
	c->sp = sp;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tcp_state, struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	const struct poll_call *call;
	struct sock_rec *r;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the owner is current. */
		__u64 pid_tgid = bpf_get_current_pid_tgid();

		if (!traced(pid_tgid >> 32))
			return 0;
		call = poll_running();
		r = fresh_rec(pid_tgid, call);
		if (!r)
			return 0;
		r->family = sk->__sk_common.skc_family;
		r->port = bpf_ntohs(sk->__sk_common.skc_dport);
		if (r->family == SOCKETS_AF_INET6)
			BPF_CORE_READ_INTO(&r->addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		else
			BPF_CORE_READ_INTO((__u32 *)r->addr, sk, __sk_common.skc_daddr);
		r->inode = sock_inode(sk);
		if (store(key, r) == 0) {
			bpf_sk_storage_get(&recorded, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			track_io(key, sk, r, call);
		}
		return 0;
	}
	/* Anything else may run in softirq: match by socket only. */
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE_WAIT && newstate != TCP_FIN_WAIT1 &&
	    newstate != TCP_LAST_ACK && newstate != TCP_CLOSE)
		return 0;
	if (!bpf_sk_storage_get(&recorded, sk, 0, 0))
		return 0;
	r = bpf_map_lookup_elem(&socks, &key);
	if (!r)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		r->established_ns = bpf_ktime_get_ns();
		/* The local end is bound by now (at SYN_SENT it may not be yet):
		 * the key the server's client_addr/client_port joins on. */
		r->local_port = sk->__sk_common.skc_num;
		if (r->family == SOCKETS_AF_INET6)
			BPF_CORE_READ_INTO(&r->local_addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		else
			BPF_CORE_READ_INTO((__u32 *)r->local_addr, sk, __sk_common.skc_rcv_saddr);
	} else if (newstate == TCP_CLOSE_WAIT) {
		r->peer_closed_ns = bpf_ktime_get_ns();
	} else {
		if (!r->closed_ns)
			r->closed_ns = bpf_ktime_get_ns();
		/* Outside libpq only the live socket matters: free its record.
		 * libpq's are kept so a handle can show its socket closed. */
		if (!r->conn)
			bpf_map_delete_elem(&socks, &key);
	}
	/* After the change: a read that missed it sees the count moved. */
	__sync_fetch_and_add(&socks_changes, 1);
	return 0;
}

/* Whether the path's last component starts with ".s.PGSQL." (PostgreSQL's
 * socket name). Where that component starts is kept in r->scratch (map
 * memory) rather than a register: the verifier then does not follow one
 * path per possible value. */
static __always_inline bool pg_socket_name(struct sock_rec *r)
{
	const char want[] = ".s.PGSQL.";
	volatile __u32 *slash = &r->scratch;
	__u32 base;

	*slash = 0;
	for (int i = 0; i < SOCKETS_PATH_LEN; i++) {
		char c = r->path[i];

		if (c == 0)
			break;
		if (c == '/')
			*slash = i + 1;
	}
	base = *slash;
	*slash = 0;
	if (base > SOCKETS_PATH_LEN - 9)
		return false;
	for (int i = 0; i < 9; i++)
		if (r->path[base + i] != want[i])
			return false;
	return true;
}

/* Attached as BPF_CGROUP_UNIX_CONNECT by the loader (libbpf 1.1 knows no
 * section name for it). Always allows the connect. */
SEC("cgroup/connect4")
int unix_connect(struct bpf_sock_addr *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	const struct poll_call *call;
	struct bpf_sock_addr_kern *kctx;
	struct sock *sk;
	struct sock_rec *r;
	const char *sun_path;
	__u32 len;

	if (!traced(pid_tgid >> 32))
		return 1;
	kctx = bpf_cast_to_kern_ctx(ctx);
	sk = kctx->sk;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM_TYPE)
		return 1;
	call = poll_running();
	r = fresh_rec(pid_tgid, call);
	if (!r)
		return 1;
	r->family = SOCKETS_AF_UNIX;
	len = kctx->uaddrlen;
	len = len > 2 ? len - 2 : 0; /* minus sun_family */
	if (len > SOCKETS_PATH_LEN)
		len = SOCKETS_PATH_LEN;
	sun_path = ((struct sockaddr_un *)kctx->uaddr)->sun_path;
	if (len == 0 || bpf_probe_read_kernel(r->path, 1, sun_path))
		return 1;
	if (r->path[0] == 0) { /* abstract name: every byte counts, none is a database's */
		if (!r->conn)
			return 1;
		bpf_probe_read_kernel(r->path, len & 127, sun_path);
	} else {
		/* pathname: up to its NUL, the rest stays zero (db_paths keys) */
		bpf_probe_read_kernel_str(r->path, len & 127, sun_path);
		if (!r->conn && !pg_socket_name(r) && !bpf_map_lookup_elem(&db_paths, r->path))
			return 1; /* not a database socket, not libpq's: no record */
	}
	r->inode = sock_inode(sk);
	if (store((__u64)sk, r) == 0)
		track_io((__u64)sk, ctx->sk, r, call);
	return 1;
}

struct fd_walk {
	struct file **fds;
	__u32 tgid;
	__u64 dropped;
};

#define S_IFMT_BITS 0170000
#define S_IFSOCK_BITS 0140000

static long note_socket_fd(__u64 i, void *data)
{
	struct fd_walk *w = data;
	struct file *f = NULL;
	struct inode *inode;
	struct exit_key key = { .tgid = w->tgid };
	__u8 one = 1;

	if (bpf_probe_read_kernel(&f, sizeof(f), &w->fds[i]) || !f)
		return 0;
	inode = BPF_CORE_READ(f, f_inode);
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT_BITS) != S_IFSOCK_BITS)
		return 0;
	key.inode = BPF_CORE_READ(inode, i_ino);
	if (bpf_map_update_elem(&exit_held, &key, &one, BPF_ANY))
		w->dropped++;
	return 0;
}

/* A thread's exit. When it is the process's last, its files are still
 * open here (exit_files() comes after this tracepoint): note each socket,
 * the sockets the kernel is about to close for it. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(thread_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct sock_stats zero = {}, *st;
	struct fd_walk w = { .tgid = tgid };
	struct fdtable *fdt;
	__u32 max;

	/* Every thread exit of the machine comes here: an untraced one leaves
	 * at this lookup. Traced, exited or not: connleak.bpf.c may have
	 * marked it first. */
	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return 0;
	w.fds = BPF_CORE_READ(fdt, fd);
	max = BPF_CORE_READ(fdt, max_fds);
	bpf_loop(max < SOCKETS_MAX_EXIT_FDS ? max : SOCKETS_MAX_EXIT_FDS, note_socket_fd, &w, 0);
	st = lookup_or_init(&sock_stats, &tgid, &zero);
	if (st) {
		st->exit_walked = 1;
		st->exit_dropped += w.dropped;
	}
	return 0;
}
