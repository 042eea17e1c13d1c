// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* connleak: count libpq connections per process and acquiring site.
 *
 * Uprobes on libpq's exported connection API; state lives in bounded maps
 * that userspace reads each interval. Nothing is streamed, so nothing is
 * lost when the reader is slow; what does not fit a map is counted. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "common.bpf.h"
#include "adopt.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set before load: children forked by a traced process are traced too. */
const volatile bool follow_children = true;
/* Set before load: bytes of user stack sent per acquisition; 0: no events. */
const volatile __u32 stack_size = CONNLEAK_STACK_SIZE;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_CONNS);
	__type(key, struct conn_key);
	__type(value, struct conn_info);
} conns SEC(".maps");

/* Handles a process got from its parent at fork (key: the child's
 * conn_key): the parent's live ones, acquired or inherited in turn, since
 * the child's copy of the memory holds the same PGconn. Deleted by the
 * child's PQfinish (released_inherited) or when userspace forgets it.
 * Not preallocated: most processes fork no child holding handles, and a
 * preallocated twin of conns cost 11.5 MB at the default size whether used
 * or not; entries are made only at fork, a slow path already. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, CONNLEAK_MAX_CONNS);
	__type(key, struct conn_key);
	__type(value, __u8);
} inherited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_SITES);
	__type(key, struct site_key);
	__type(value, struct site_stats);
} sites SEC(".maps");

/* Per thread: its outermost connect or ping call (depth 0: none). Task
 * storage, not a hash keyed by tid: one helper call finds (or makes) it, a
 * call's end is a field store rather than a delete, and the kernel frees it
 * with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct thread_call);
} threads SEC(".maps");

/* This thread's call state, made on first use when `create`. */
static __always_inline struct thread_call *thread_call_of(bool create)
{
	return bpf_task_storage_get(&threads, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Set by userspace once it watches any release (release_watch): until
 * then no PQfinish looks there. */
volatile __u32 release_watch_used;

/* Bumped after every insert into and delete from conns: userspace reads
 * the map again only when it moved (100,000 entries cost ~0.1 s to read). */
volatile __u64 conns_changes;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_RELEASE_WATCH);
	__type(key, struct conn_key);
	__type(value, __u64);
} release_watch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CONNLEAK_EVENTS_SIZE);
} events SEC(".maps");

#include "python.bpf.h"
#include "stack_walk.bpf.h"

static __always_inline void atomic_max(__u64 *slot, __u64 val)
{
	__u64 cur = *slot;

	/* A few tries suffice: only concurrent finishes of one site race. */
	for (int i = 0; i < 4 && val > cur; i++) {
		__u64 seen = __sync_val_compare_and_swap(slot, cur, val);

		if (seen == cur)
			break;
		cur = seen;
	}
}

/* Once per process (struct process_event): woken at once. */
static __always_inline void send_entered(__u32 tgid)
{
	struct process_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return; /* its maps are read at its first stack instead */
	e->kind = EVENT_ENTERED;
	e->tgid = tgid;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

/* Whether the 8 bytes at sp hold the uretprobe trampoline's address: the
 * return address of a call whose return is probed (ours or another tool's)
 * was replaced there. Direct loads, no helper call but the read. */
static __always_inline bool return_probed(__u64 sp)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct xol_area *xol = mm ? mm->uprobes_state.xol_area : NULL;
	__u64 ret = 0;

	if (!xol || bpf_probe_read_user(&ret, sizeof(ret), (void *)sp))
		return false;
	return ret == xol->vaddr;
}

static __always_inline int call_enter(struct pt_regs *ctx, __u32 kind)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct proc_stats *ps = traced_or_adopted(pid_tgid >> 32);
	struct thread_call *tc;
	__u64 sp = PT_REGS_SP(ctx);

	if (!ps)
		return 0;
	tc = thread_call_of(true);
	if (!tc) {
		__sync_fetch_and_add(&ps->dropped_threads, 1);
		return 0;
	}
	/* libpq calling its own API: only the outermost call counts. A call
	 * nested in it runs deeper in the stack or, a tail call, at the same
	 * depth with its return address already replaced by the outer call's
	 * return probe. Any other means the outer call returned unseen (it
	 * entered before its return probe was attached): start afresh rather
	 * than count nothing on this thread ever again. The site (the caller's
	 * return address) is taken at the return, where it is the ip: no read
	 * of the stack here but for that rare tie. */
	if (tc->depth && (sp < tc->sp || (sp == tc->sp && return_probed(sp)))) {
		tc->depth++;
		return 0;
	}
	if (!ps->entered && __sync_val_compare_and_swap(&ps->entered, 0, 1) == 0)
		send_entered(pid_tgid >> 32);
	tc->start_ns = bpf_ktime_get_ns();
	tc->kind = kind;
	tc->sp = sp;
	tc->depth = 1;
	return 0;
}

/* bpf_find_vma callback: where in which file the site lies. */
static long describe_site(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct site_stats *ss = data;
	struct file *file = vma->vm_file;

	ss->file_offset = ss->file_offset - vma->vm_start + (vma->vm_pgoff << 12);
	if (!file)
		return 0;
	ss->inode = BPF_CORE_READ(file, f_inode, i_ino);
	ss->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	bpf_probe_read_kernel_str(ss->module, sizeof(ss->module),
				  BPF_CORE_READ(file, f_path.dentry, d_name.name));
	return 0;
}

static __always_inline void count_site_acquired(struct proc_stats *ps, __u32 tgid, __u64 site)
{
	struct site_key key = { .tgid = tgid, .site = site };
	struct site_stats *ss = bpf_map_lookup_elem(&sites, &key);

	if (!ss) {
		/* First acquisition from this site: a one-off VMA lookup, off
		 * the common path. */
		struct site_stats fresh = { .file_offset = site };

		if (bpf_find_vma(bpf_get_current_task_btf(), site, describe_site, &fresh, 0))
			fresh.file_offset = 0;
		ss = lookup_or_init(&sites, &key, &fresh);
		if (!ss) {
			__sync_fetch_and_add(&ps->dropped_sites, 1);
			return;
		}
	}
	__sync_fetch_and_add(&ss->acquired, 1);
}

#define PAGE_BYTES 4096

/* bpf_find_vma callback: the end of the mapping holding the stack pointer. */
static long stack_end(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	*(__u64 *)data = vma->vm_end;
	return 0;
}

/* Userspace drains the ring every 20 ms (event_drain.h); a wakeup per event would cost the
 * traced thread an irq_work (a self-IPI: a VM exit under KVM) on every
 * connect. So the reader is woken only once the ring is half full. */
static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 2
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

/* A thread's frames lie within this of its stack pointer (the default
 * stack size, 8 MiB): a bound found further away is not this stack's. */
#define STACK_BOUND (8ULL << 20)

/* One page of the stack on its way from the user's memory to the ring (a
 * dynptr is written from kernel memory only). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[PAGE_BYTES]);
} copy_page SEC(".maps");

/* The caller's registers and the top of its stack, for userspace to unwind:
 * a stack the kernel could not walk yet (stack_walk.bpf.h).
 * Sent after the counters are updated: an event read implies its counts.
 * The record is as long as the stack copied (a thread's few KiB, not
 * stack_size plus a page of slack): while userspace is still learning a
 * process's stacks, the ring holds several times more copies. */
static __always_inline void send_acquire(struct pt_regs *ctx, struct proc_stats *ps,
					 const struct conn_key *key, const struct conn_info *info,
					 const struct stack_capture *cap, __u32 kind)
{
	const struct python_stack *py = stack_python(cap);
	struct acquire_event *e;
	struct task_struct *task;
	struct bpf_dynptr rec;
	__u64 sp = ctx->sp, end = 0, first_sp, fsbase, len, off = 0;
	__u32 zero = 0;
	__u8 *page = bpf_map_lookup_elem(&copy_page, &zero);

	if (!page)
		return;
	/* Copy up to where the thread's frames end, page by page: a page never
	 * touched (the random gap exec leaves above the first frame, a large
	 * unused local array) cannot be read without faulting, and reads as
	 * zeros, the rest still copied. The main thread's frames end at its
	 * first stack pointer (mm->start_stack, where argc lies): above it,
	 * the argv and envp pointers, the auxiliary vector, a random gap of up
	 * to 8 KiB and the strings of argv and the environment are no frames,
	 * and may hold secrets (PGPASSWORD, a DATABASE_URL). Never copied; that
	 * also keeps the copies short (a burst of them at a process's start
	 * must fit the ring).
	 * A glibc thread's stack ends below its thread pointer (struct pthread
	 * sits at the top of the stack block). Only other stacks need the
	 * mapping's end: bpf_find_vma only try-locks the address space and
	 * fails while another thread maps or unmaps memory (malloc does, in a
	 * busy client), which would leave the copy empty. */
	task = bpf_get_current_task_btf();
	first_sp = BPF_CORE_READ(task, mm, start_stack);
	fsbase = task->thread.fsbase;
	if (first_sp > sp && first_sp - sp <= STACK_BOUND)
		end = first_sp + 8; /* argc: _start's frame ends there */
	else if (fsbase > sp && fsbase - sp <= STACK_BOUND)
		end = fsbase;
	else if (bpf_find_vma(task, sp, stack_end, &end, 0) || end <= sp)
		end = sp;
	len = end - sp;
	if (len > stack_size)
		len = stack_size;
	if (len > CONNLEAK_STACK_SIZE_MAX)
		len = CONNLEAK_STACK_SIZE_MAX;
	/* Even a failed reservation must be discarded. */
	if (bpf_ringbuf_reserve_dynptr(&events, sizeof(*e) + len, 0, &rec)) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		__sync_fetch_and_add(&ps->dropped_stacks, 1);
		return;
	}
	e = bpf_dynptr_data(&rec, 0, sizeof(*e));
	if (!e) {
		bpf_ringbuf_discard_dynptr(&rec, 0);
		return;
	}
	e->kind = kind;
	e->tgid = key->tgid;
	e->tid = info->tid;
	e->conn = key->conn;
	e->start_ns = info->start_ns;
	e->acquired_ns = info->acquired_ns;
	e->site = info->site;
	e->regs[0] = ctx->ax;
	e->regs[1] = ctx->dx;
	e->regs[2] = ctx->cx;
	e->regs[3] = ctx->bx;
	e->regs[4] = ctx->si;
	e->regs[5] = ctx->di;
	e->regs[6] = ctx->bp;
	e->regs[7] = sp;
	e->regs[8] = ctx->r8;
	e->regs[9] = ctx->r9;
	e->regs[10] = ctx->r10;
	e->regs[11] = ctx->r11;
	e->regs[12] = ctx->r12;
	e->regs[13] = ctx->r13;
	e->regs[14] = ctx->r14;
	e->regs[15] = ctx->r15;
	e->regs[16] = ctx->ip;
	e->py_count = 0;
	e->py_flags = 0;
	e->py_generation = 0;
	e->py_pad = 0;
	e->family = cap->family;
	e->stack_len = len;
	if (py) {
		e->py_count = py->count;
		e->py_flags = py->flags;
		e->py_generation = py->generation;
		bpf_probe_read_kernel(e->py, sizeof(e->py), py->frames);
	}
	for (int i = 0; i < CONNLEAK_STACK_SIZE_MAX / PAGE_BYTES + 1; i++) {
		__u64 chunk = PAGE_BYTES - ((sp + off) & (PAGE_BYTES - 1));

		if (off >= len)
			break;
		if (chunk > len - off)
			chunk = len - off;
		if (chunk > PAGE_BYTES)
			break;
		bpf_probe_read_user(page, chunk, (void *)(sp + off)); /* zeros on a fault */
		bpf_dynptr_write(&rec, sizeof(*e) + off, page, chunk, 0);
		off += chunk;
	}
	bpf_ringbuf_submit_dynptr(&rec, stack_worth_waking(cap) ? BPF_RB_FORCE_WAKEUP : wakeup_flags());
}

static __always_inline void send_release(struct proc_stats *ps, const struct conn_key *key,
					 const struct conn_info *info, __u64 hold)
{
	struct release_event *e;

	if (!stack_size)
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&ps->dropped_stacks, 1);
		return;
	}
	e->kind = EVENT_RELEASE;
	e->tgid = key->tgid;
	e->conn = key->conn;
	e->start_ns = info->start_ns;
	e->hold_ns = hold;
	e->acquired_ns = info->acquired_ns;
	e->stack = info->stack;
	bpf_ringbuf_submit(e, wakeup_flags());
}

SEC("uprobe")
int BPF_KPROBE(connect_enter)
{
	return call_enter(ctx, CALL_CONNECT);
}

SEC("uprobe")
int BPF_KPROBE(ping_enter)
{
	return call_enter(ctx, CALL_PING);
}

/* Return of any probed connect or ping function: act on the outermost. */
SEC("uretprobe")
int BPF_KRETPROBE(call_exit, void *conn)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, tgid = pid_tgid >> 32;
	struct thread_call *tc = thread_call_of(false);
	struct proc_stats *ps;
	struct conn_info info = {};
	struct conn_key key = {};

	if (!tc || !tc->depth)
		return 0;
	if (tc->depth > 1) {
		tc->depth--;
		return 0;
	}
	info.start_ns = tc->start_ns;
	/* The return probe put the caller's return address back as the ip. */
	info.site = PT_REGS_IP(ctx);
	info.tid = tid;
	__u32 kind = tc->kind;
	tc->depth = 0;

	ps = traced_proc(tgid);
	if (!ps)
		return 0;
	if (kind == CALL_PING) {
		__sync_fetch_and_add(&ps->pings, 1);
		return 0;
	}
	if (!conn) /* out of memory in libpq: nothing was handed out */
		return 0;
	/* A failed connect still returns a PGconn that needs PQfinish: it is
	 * an acquisition like any other. */
	/* The stack: walked here when every return address on it is known
	 * (then counted per stack below), else copied for userspace to unwind
	 * and learn from. */
	struct stack_capture *cap = stack_size ? capture_stack(ctx, tgid, &tc->acquire_walk) : NULL;
	struct stack_stats *st = NULL;

	if (cap && cap->id)
		st = stack_entry(ps, tgid, info.site, cap, EVENT_STACK);
	if (st)
		info.stack = cap->id;
	info.acquired_ns = bpf_ktime_get_ns();
	key.tgid = tgid;
	key.conn = (__u64)conn;
	if (bpf_map_update_elem(&conns, &key, &info, BPF_ANY))
		__sync_fetch_and_add(&ps->dropped_conns, 1);
	else
		__sync_fetch_and_add(&conns_changes, 1);
	__sync_fetch_and_add(&ps->acquired, 1);
	count_site_acquired(ps, tgid, info.site);
	/* After the site's count: a stack's count never runs ahead of it. */
	if (st)
		__sync_fetch_and_add(&st->acquired, 1);
	else if (cap)
		send_acquire(ctx, ps, &key, &info, cap, EVENT_ACQUIRE);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(finish_enter, void *conn)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct proc_stats *ps = traced_proc(tgid);
	struct conn_key key = { .tgid = tgid, .conn = (__u64)conn };
	struct thread_call *tc;
	struct conn_info *live, info;
	struct site_stats *ss;

	if (!ps || !conn)
		return 0;
	live = bpf_map_lookup_elem(&conns, &key);
	if (!live) {
		/* PQping finishing its own handle (never acquired: its connect
		 * is nested in the ping) is no release at all. */
		tc = thread_call_of(false);
		if (tc && tc->depth && tc->kind == CALL_PING)
			return 0;
		/* Not acquired here: its parent's (copied at fork), or made
		 * before connleak attached. */
		if (bpf_map_delete_elem(&inherited, &key) == 0)
			__sync_fetch_and_add(&ps->released_inherited, 1);
		else
			__sync_fetch_and_add(&ps->released_untracked, 1);
		return 0;
	}
	info = *live;
	/* Whoever deletes the entry counts it, so a racing double finish
	 * cannot count twice. */
	if (bpf_map_delete_elem(&conns, &key))
		return 0;
	__sync_fetch_and_add(&conns_changes, 1);
	__sync_fetch_and_add(&ps->released, 1);

	struct site_key skey = { .tgid = tgid, .site = info.site };
	__u64 hold = bpf_ktime_get_ns() - info.acquired_ns;

	ss = bpf_map_lookup_elem(&sites, &skey);
	if (ss) { /* else its acquisition was counted in dropped_sites */
		__sync_fetch_and_add(&ss->released, 1);
		__sync_fetch_and_add(&ss->hold_ns_total, hold);
		atomic_max(&ss->hold_ns_max, hold);
	}
	if (info.stack) { /* its stack is counted here: no event */
		struct stack_key stkey = { .tgid = tgid, .stack = info.stack };
		struct stack_stats *st = bpf_map_lookup_elem(&stack_counts, &stkey);

		if (st) {
			__sync_fetch_and_add(&st->released, 1);
			__sync_fetch_and_add(&st->hold_ns_total, hold);
			atomic_max(&st->hold_ns_max, hold);
		}
		/* Only a handle userspace reported as a leak needs an event. */
		if (!release_watch_used)
			return 0;
		__u64 *watched = bpf_map_lookup_elem(&release_watch, &key);

		if (!watched)
			return 0;
		__u64 want = *watched;

		bpf_map_delete_elem(&release_watch, &key);
		if (want != info.acquired_ns) /* an earlier handle at this address */
			return 0;
	}
	send_release(ps, &key, &info, hold);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(reset_enter)
{
	struct proc_stats *ps = traced_proc(bpf_get_current_pid_tgid() >> 32);

	if (ps)
		__sync_fetch_and_add(&ps->resets, 1);
	return 0;
}

/* Counted in the child's entry (map memory), not on the stack: the
 * verifier then need not follow one state per count. */
struct fork_copy {
	__u32 parent;
	__u32 child;
	struct proc_stats *cs;
};

static __always_inline void inherit(struct fork_copy *fc, __u64 conn)
{
	struct conn_key key = { .tgid = fc->child, .conn = conn };
	__u8 one = 1;

	if (bpf_map_update_elem(&inherited, &key, &one, BPF_ANY))
		__sync_fetch_and_add(&fc->cs->dropped_inherited, 1);
	else
		__sync_fetch_and_add(&fc->cs->inherited, 1);
}

static long inherit_acquired(struct bpf_map *map, struct conn_key *key, struct conn_info *info,
			     struct fork_copy *fc)
{
	if (key->tgid == fc->parent)
		inherit(fc, key->conn);
	return 0;
}

static long inherit_inherited(struct bpf_map *map, struct conn_key *key, __u8 *val, struct fork_copy *fc)
{
	if (key->tgid == fc->parent)
		inherit(fc, key->conn);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_pid = BPF_CORE_READ(child, pid);
	struct proc_stats zero = {}, *ps;
	struct fork_copy fc = { .parent = parent_tgid, .child = child_pid };

	if (!follow_children || child_pid != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */
	ps = traced_proc(parent_tgid);
	if (!ps)
		return 0;
	if (bpf_map_update_elem(&procs, &child_pid, &zero, BPF_ANY)) {
		__sync_fetch_and_add(&ps->dropped_children, 1);
		return 0;
	}
	python_fork(parent_tgid, child_pid);
	__sync_fetch_and_add(&procs_changes, 1); /* after its Python layout: a look between finds it */
	/* The child holds the parent's live handles too. The maps are walked
	 * only when the parent has some (its counters say so): a parent that
	 * forks before connecting, or holds nothing, pays one lookup. */
	if (ps->acquired <= ps->released + ps->dropped_conns && ps->inherited <= ps->released_inherited)
		return 0;
	fc.cs = bpf_map_lookup_elem(&procs, &child_pid);
	if (!fc.cs)
		return 0;
	if (ps->acquired > ps->released + ps->dropped_conns)
		bpf_for_each_map_elem(&conns, inherit_acquired, &fc, 0);
	if (ps->inherited > ps->released_inherited)
		bpf_for_each_map_elem(&inherited, inherit_inherited, &fc, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct proc_stats *ps = traced_proc(tgid);

	if (!ps)
		return 0;
	/* signal->live reaches 0 when the last thread of the group exits;
	 * from then on nothing can finish the handles still live. */
	if (BPF_CORE_READ(task, signal, live.counter) == 0) {
		bpf_probe_read_kernel_str(ps->comm, sizeof(ps->comm), task->comm);
		ps->exited_ns = bpf_ktime_get_ns();
		__sync_fetch_and_add(&procs_changes, 1);
	}
	return 0;
}

/* Last users of libpq's sockets: send_acquire on the first send of a unit of work. */
#include "sock_io.bpf.h"
