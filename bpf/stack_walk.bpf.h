/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Stacks walked in the kernel, with what userspace learnt (see connleak.h,
 * "Stacks walked in the kernel").
 *
 * Userspace unwinds the first stacks through a site the slow way (a copy of
 * the stack, DWARF CFI, libdwfl) and writes, for each return address on
 * them, how to find the caller's: CFA = rsp or rbp + N, the return address
 * at CFA - 8 (unwind_steps). From then on the kernel walks such a stack
 * itself, one 8-byte read a frame, and names it by a hash of its return
 * addresses and Python frames: counted per (process, stack id) here, sent
 * to userspace once. A return address not learnt yet (or with a rule that
 * is not "register + offset") ends the walk: the caller then sends the old
 * full copy, which teaches userspace the rest. So the table only makes
 * things faster: correctness never depends on it.
 *
 * For any program: capture_stack() at a uprobe or uretprobe, then
 * stack_entry() for the counters of a complete stack (its event sent once).
 * Include after python.bpf.h. */
#ifndef CONNLEAK_STACK_WALK_BPF_H
#define CONNLEAK_STACK_WALK_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNLEAK_UNWIND_STEPS);
	__type(key, struct unwind_key);
	__type(value, struct unwind_step);
} unwind_steps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_SITES);
	__type(key, struct stack_key);
	__type(value, struct stack_stats);
} stack_counts SEC(".maps");

/* Return addresses a walk stopped at, and when the reader was last woken
 * for one: the first copy that can teach it wakes the reader at once, so
 * learning takes milliseconds, not the 100 ms of a drain. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct unwind_key);
	__type(value, __u64);
} unwind_asked SEC(".maps");

/* At most this much of a stack is read in one go (a power of two). How
 * much a walk needs is learnt per thread (walk_memo.span): the span its
 * previous walk read, so a thread's first walk reads slot by slot. */
#define STACK_WINDOW 8192

struct stack_capture {
	__u64 id;     /* stack id; 0: the walk did not reach the outermost frame */
	__u64 family; /* unwind_key.family of the process */
	__u64 stuck;  /* the return address the walk stopped at (id 0) */
	__u32 count;  /* return addresses in pcs[] */
	__u32 python; /* the thread's Python frames are in python_scratch (stack_python) */
	__u64 pcs[CONNLEAK_STACK_FRAMES];
	__u16 slots[CONNLEAK_MEMO_FRAMES]; /* as walk_memo.slots, for the walk to be remembered */
	/* The stack from sp up, read in one go: the slots the walk reads lie
	 * there (the few that do not are read one by one). */
	__u8 window[STACK_WINDOW + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack_capture);
} stack_scratch SEC(".maps");

/* The Python frames capture_stack() took, or NULL (not a Python process).
 * (A map value cannot hold a pointer the verifier still trusts.) */
static __always_inline struct python_stack *stack_python(const struct stack_capture *cap)
{
	__u32 zero = 0;

	return cap->python ? bpf_map_lookup_elem(&python_scratch, &zero) : NULL;
}

enum walk_end {
	WALK_ON = 0,
	WALK_COMPLETE = 1,
	WALK_UNKNOWN = 2, /* a return address not learnt, or an unreadable slot */
};

struct stack_walker {
	struct stack_capture *cap;
	__u64 pc, sp, bp, hash;
	__u64 base;   /* where window[] starts: the stack pointer at the probe */
	__u64 top;    /* the highest address a read needed, plus 8 */
	__u32 window; /* bytes of window[] that hold the stack */
	__u32 end;
	__u32 unsure; /* a read outside the window or an rbp-based CFA: not to be remembered */
};

/* The 8-byte user word at addr: from the window when it lies there, else
 * read. Non-zero when it cannot be read. */
static __always_inline int stack_word(struct stack_walker *w, __u64 addr, __u64 *out)
{
	__u64 off = addr - w->base;

	if (addr + 8 > w->top)
		w->top = addr + 8;
	if (addr >= w->base && off + 8 <= w->window) {
		*out = *(__u64 *)(w->cap->window + (off & (STACK_WINDOW - 1)));
		return 0;
	}
	w->unsure = 1;
	return bpf_probe_read_user(out, sizeof(*out), (void *)addr);
}

static __always_inline __u64 mix64(__u64 h, __u64 v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

/* bpf_loop callback: one frame. */
static long walk_one(__u64 i, void *data)
{
	struct stack_walker *w = data;
	struct stack_capture *cap = w->cap;
	struct unwind_key key = { .family = cap->family, .pc = w->pc };
	const struct unwind_step *step;
	__u64 cfa, ra = 0, bp;

	cap->pcs[i & (CONNLEAK_STACK_FRAMES - 1)] = w->pc;
	cap->count = i + 1;
	w->hash = mix64(w->hash, w->pc);
	step = bpf_map_lookup_elem(&unwind_steps, &key);
	if (!step) {
		w->end = WALK_UNKNOWN;
		return 1;
	}
	if (step->flags & UNWIND_OUTERMOST) {
		w->end = WALK_COMPLETE;
		return 1;
	}
	if (step->flags & UNWIND_CFA_RBP)
		w->unsure = 1; /* rbp comes from outside the words compared */
	cfa = (step->flags & UNWIND_CFA_RBP ? w->bp : w->sp) + (__s64)step->cfa_offset;
	if (i + 1 < CONNLEAK_MEMO_FRAMES)
		w->cap->slots[(i + 1) & (CONNLEAK_MEMO_FRAMES - 1)] = cfa - 8 - w->base;
	if (stack_word(w, cfa - 8, &ra) || !ra) {
		w->end = WALK_UNKNOWN;
		return 1;
	}
	if (step->rbp_offset) {
		if (stack_word(w, cfa + step->rbp_offset, &bp)) {
			w->end = WALK_UNKNOWN;
			return 1;
		}
		w->bp = bp;
	}
	w->sp = cfa;
	w->pc = ra;
	return 0;
}

/* The address space's layout: mmap_base and the stack's top are drawn at
 * random at exec and copied by fork, so forked workers (same addresses)
 * share what was learnt, and other processes never see it. */
static __always_inline __u64 address_space_family(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;

	if (!mm)
		return 0;
	return mix64(mix64(1, mm->mmap_base), mm->start_stack) | 1;
}

/* Whether the window holds the memo's stack: then the walk would give the
 * memo's return addresses, and they are copied to cap->pcs instead.
 *
 * Why that is sound, by induction over the frames: frame 0's pc is the
 * probe's ip and its sp the window's base, as in the memo's walk. If frame
 * i's pc is the memo's, its step (learnt once per family and pc) is too; an
 * rsp-based CFA then lies at the same offset from base, so the return
 * address comes from the same slot, and the same word there is the same
 * caller's pc. Saved rbp words only matter to an rbp-based CFA, which is
 * never remembered, and every word the memo's walk read lay in its span,
 * which this window covers: no read can fail where it did not. */
static __always_inline bool walk_remembered(struct stack_walker *w, const struct walk_memo *memo)
{
	struct stack_capture *cap = w->cap;
	__u32 n = memo->count;

	if (!n || n > CONNLEAK_MEMO_FRAMES || memo->family != cap->family || memo->pcs[0] != w->pc ||
	    w->window < memo->span)
		return false;
	for (__u32 i = 1; i < CONNLEAK_MEMO_FRAMES && i < n; i++) {
		__u32 off = memo->slots[i];

		if (off + 8 > w->window || *(__u64 *)(cap->window + (off & (STACK_WINDOW - 1))) != memo->pcs[i])
			return false;
	}
	/* Constant size: copied inline, no helper call. */
	__builtin_memcpy(cap->pcs, memo->pcs, sizeof(memo->pcs));
	cap->count = n;
	w->hash = memo->hash;
	return true;
}

/* The current thread's stack at a uprobe or uretprobe (its ip the first
 * frame), walked with what userspace learnt, and its Python frames. In a
 * per-CPU scratch: valid until the program ends. `memo` (or NULL): the
 * thread's last walk of this kind, used and updated. */
static __always_inline struct stack_capture *capture_stack(struct pt_regs *ctx, __u32 tgid, struct walk_memo *memo)
{
	struct stack_walker w = {};
	struct stack_capture *cap;
	struct python_stack *py;
	__u32 zero = 0;

	py = python_capture(tgid); /* first: its code descriptions go before any stack event */
	cap = bpf_map_lookup_elem(&stack_scratch, &zero);
	if (!cap)
		return NULL;
	cap->id = 0;
	cap->count = 0;
	cap->stuck = 0;
	cap->python = py != NULL;
	cap->family = address_space_family();
	if (!cap->family)
		return cap;
	w.cap = cap;
	w.pc = PT_REGS_IP(ctx);
	w.sp = PT_REGS_SP(ctx);
	w.bp = ctx->bp;
	w.hash = cap->family;
	w.base = w.sp;
	w.top = w.sp;
	/* One read of the span the thread's last walk needed, instead of a
	 * read per frame (each helper call costs). A read that faults (this
	 * stack is shallower and the span crosses its end) leaves the window
	 * empty: every slot is then read on its own. */
	if (memo) {
		__u32 len = memo->span;

		if (len > STACK_WINDOW)
			len = STACK_WINDOW;
		if (len && bpf_probe_read_user(cap->window, len, (void *)w.base) == 0)
			w.window = len;
	}
	/* The same stack as last time (the usual case: a thread connects from
	 * where it did before) costs no lookup a frame: a compare a frame. */
	if (memo && walk_remembered(&w, memo))
		goto python;
	bpf_loop(CONNLEAK_STACK_FRAMES, walk_one, &w, 0);
	if (memo) {
		memo->span = w.top - w.base < STACK_WINDOW ? w.top - w.base : STACK_WINDOW;
		/* Remembered only when the compare above can stand for the walk. */
		memo->count = 0;
		if (w.end == WALK_COMPLETE && !w.unsure && cap->count <= CONNLEAK_MEMO_FRAMES) {
			__builtin_memcpy(memo->pcs, cap->pcs, sizeof(memo->pcs));
			__builtin_memcpy(memo->slots, cap->slots, sizeof(memo->slots));
			memo->family = cap->family;
			memo->hash = w.hash;
			memo->count = cap->count;
		}
	}
	if (w.end != WALK_COMPLETE) {
		cap->stuck = w.pc;
		return cap;
	}
python:
	if (py) {
		__u32 n = py->count;

		for (__u32 i = 0; i < CONNLEAK_PY_FRAMES && i < n; i++) {
			w.hash = mix64(w.hash, py->frames[i].code);
			w.hash = mix64(w.hash, ((__u64)py->frames[i].instr << 32) | py->frames[i].flags);
		}
		w.hash = mix64(w.hash, py->flags);
	}
	cap->id = w.hash ? w.hash : 1;
	return cap;
}

/* Sends a complete stack's return addresses and Python frames (kind:
 * EVENT_STACK, an acquisition's; EVENT_USE_STACK, a last user's). */
static __always_inline int send_stack(__u32 kind, __u32 tgid, __u64 site, const struct stack_capture *cap)
{
	struct python_stack *py = stack_python(cap);
	struct stack_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return -1;
	e->kind = kind;
	e->tgid = tgid;
	e->stack = cap->id;
	e->site = site;
	e->pc_count = cap->count;
	bpf_probe_read_kernel(e->pcs, sizeof(e->pcs), cap->pcs);
	e->py_count = 0;
	e->py_flags = 0;
	e->py_generation = 0;
	if (py) {
		e->py_count = py->count;
		e->py_flags = py->flags;
		e->py_generation = py->generation;
		bpf_probe_read_kernel(e->py, sizeof(e->py), py->frames);
	}
	/* Rare (once per stack): the reader names it at once. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* The entry of a complete stack (cap->id != 0) of process tgid in
 * stack_counts, made and its stack sent (as `kind`) the first time; NULL
 * when the map is full. An acquisition's (EVENT_STACK) counts at `site`; a
 * last user's (EVENT_USE_STACK, site 0) only uses `sent`: never counted as an
 * acquisition, userspace names it a last user only. An event the ring had no
 * room for is counted in dropped_stacks and sent again at the next use: its
 * counts wait in the map meanwhile. */
static __always_inline struct stack_stats *stack_entry(struct proc_stats *ps, __u32 tgid, __u64 site,
						       const struct stack_capture *cap, __u32 kind)
{
	struct stack_key key = { .tgid = tgid, .stack = cap->id };
	struct stack_stats fresh = { .site = site }, *ss;

	ss = lookup_or_init(&stack_counts, &key, &fresh);
	if (!ss)
		return NULL;
	if (!ss->sent && __sync_val_compare_and_swap(&ss->sent, 0, 1) == 0 && send_stack(kind, tgid, site, cap)) {
		ss->sent = 0;
		__sync_fetch_and_add(&ps->dropped_stacks, 1);
	}
	return ss;
}

/* Whether a copy of this stack should wake the reader now: the first for
 * the return address its walk stopped at (once a second, as learning may
 * fail for good: a rule that is not register + offset). */
static __always_inline bool stack_worth_waking(const struct stack_capture *cap)
{
	struct unwind_key key = { .family = cap->family, .pc = cap->stuck };
	__u64 now = bpf_ktime_get_ns(), *last = bpf_map_lookup_elem(&unwind_asked, &key);

	if (last && now - *last < 1000000000ULL)
		return false;
	bpf_map_update_elem(&unwind_asked, &key, &now, BPF_ANY);
	return true;
}

#endif /* CONNLEAK_STACK_WALK_BPF_H */
