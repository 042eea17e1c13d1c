/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Python frames of the acquiring thread, read in the kernel at the
 * acquisition, so they are the acquirer's whatever the process does next.
 *
 * The thread's PyThreadState is found through its pthread-specific data
 * (the interpreter's autoTSSkey), which holds it even while the thread has
 * released the GIL (psycopg2 does around libpq). From it the chain of
 * _PyInterpreterFrame is walked: code object and last instruction per frame.
 * Each code object not described yet to userspace for this process is sent
 * once (python_code_event), so naming never depends on the process still
 * running. Included by connleak.bpf.c; offsets come from python_procs. */
#ifndef CONNLEAK_PYTHON_BPF_H
#define CONNLEAK_PYTHON_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct python_layout);
} python_procs SEC(".maps");

struct python_code_key {
	__u32 tgid;
	__u32 generation;
	__u64 code;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNLEAK_PY_CODES);
	__type(key, struct python_code_key);
	__type(value, __u8);
} seen_codes SEC(".maps");

#define PY_FRAME_READ 128

/* The frames, gathered before the acquire event is reserved so the code
 * descriptions precede it in the ring buffer. */
struct python_stack {
	__u32 count;
	__u32 flags;
	__u32 generation;
	__u32 pad;
	struct python_frame frames[CONNLEAK_PY_FRAMES];
	/* One frame's first bytes, read at once: its fields are picked from
	 * here (offsets below PY_FRAME_READ - 8, masked for the verifier). */
	__u8 frame_buf[PY_FRAME_READ + 8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct python_stack);
} python_scratch SEC(".maps");

#define FRAME_OWNED_BY_CSTACK 3

static __always_inline __u64 read_ptr(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return v;
}

/* A str of the interpreter as UTF-8 (ASCII ones in place, others through
 * their cached UTF-8 copy), or "" when neither is there. */
static __always_inline void read_pystr(const struct python_layout *l, __u64 str, char *out, __u32 size)
{
	__u32 state = 0;
	__u64 data;

	out[0] = 0;
	if (!str)
		return;
	bpf_probe_read_user(&state, sizeof(state), (void *)(str + l->unicode_state));
	data = state & (1 << 6) ? str + l->unicode_ascii_data : read_ptr(str + l->unicode_utf8);
	if (data)
		bpf_probe_read_user_str(out, size, (void *)data);
}

/* A global function: verified once, not at each frame of the walk. */
__noinline int describe_code(__u32 tgid, __u32 generation, __u64 code)
{
	struct python_code_key key = { .tgid = tgid, .generation = generation, .code = code };
	const struct python_layout *l;
	struct python_code_event *e;
	__u8 one = 1;
	__u64 table;
	__s64 size = 0;
	__u32 len;

	if (bpf_map_lookup_elem(&seen_codes, &key))
		return 0;
	l = bpf_map_lookup_elem(&python_procs, &tgid);
	if (!l || l->generation != generation)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0; /* described at a later acquisition; this one's frames stay unnamed */
	e->kind = EVENT_PY_CODE;
	e->tgid = tgid;
	e->code = code;
	e->generation = l->generation;
	e->firstlineno = 0;
	bpf_probe_read_user(&e->firstlineno, sizeof(e->firstlineno), (void *)(code + l->code_firstlineno));
	read_pystr(l, read_ptr(code + l->code_qualname), e->qualname, sizeof(e->qualname));
	read_pystr(l, read_ptr(code + l->code_filename), e->filename, sizeof(e->filename));
	table = read_ptr(code + l->code_linetable);
	if (table)
		bpf_probe_read_user(&size, sizeof(size), (void *)(table + l->bytes_size));
	if (size < 0)
		size = 0;
	e->linetable_size = size;
	len = size > CONNLEAK_PY_LINETABLE_LEN ? CONNLEAK_PY_LINETABLE_LEN : size;
	if (len && bpf_probe_read_user(e->linetable, len, (void *)(table + l->bytes_data)))
		len = 0;
	e->linetable_len = len;
	bpf_ringbuf_submit(e, 0);
	bpf_map_update_elem(&seen_codes, &key, &one, BPF_ANY);
	return 0;
}

struct python_walk {
	const struct python_layout *l;
	struct python_stack *s;
	__u64 frame;
	__u32 tgid;
	__u32 n;
};

/* bpf_loop callback: one _PyInterpreterFrame, innermost first. */
static long walk_frame(__u64 i, void *data)
{
	struct python_walk *w = data;
	const struct python_layout *l = w->l;
	struct python_stack *s = w->s;
	__u64 frame = w->frame, code, prev_instr, first, previous;
	__u8 owner, entry = 0;
	struct python_frame *f;
	__u8 *buf = s->frame_buf;

	if (!frame || bpf_probe_read_user(buf, PY_FRAME_READ, (void *)frame))
		return 1;
	code = *(__u64 *)(buf + (l->frame_code & (PY_FRAME_READ - 1)));
	prev_instr = *(__u64 *)(buf + (l->frame_prev_instr & (PY_FRAME_READ - 1)));
	previous = *(__u64 *)(buf + (l->frame_previous & (PY_FRAME_READ - 1)));
	owner = buf[l->frame_owner & (PY_FRAME_READ - 1)];
	if (l->frame_is_entry != PY_NO_OFFSET)
		entry = buf[l->frame_is_entry & (PY_FRAME_READ - 1)];
	if (owner == FRAME_OWNED_BY_CSTACK) {
		/* 3.12+: the shim an evaluation call starts with; the frame
		 * inside it is that call's first. */
		if (w->n)
			s->frames[(w->n - 1) & (CONNLEAK_PY_FRAMES - 1)].flags |= PY_FRAME_ENTRY;
		w->frame = previous;
		return 0;
	}
	if (w->n >= CONNLEAK_PY_FRAMES) {
		s->flags |= PY_STACK_TRUNCATED;
		return 1;
	}
	if (!code)
		return 1;
	f = &s->frames[w->n & (CONNLEAK_PY_FRAMES - 1)];
	first = code + l->code_adaptive;
	f->code = code;
	f->instr = prev_instr > first ? (prev_instr - first) / 2 : 0;
	f->flags = entry ? PY_FRAME_ENTRY : 0;
	describe_code(w->tgid, l->generation, code);
	w->n++;
	w->frame = previous;
	return 0;
}

/* The current thread's Python frames, or NULL for a process that is not
 * (known to be) Python: then one map lookup is all it cost. */
static __always_inline struct python_stack *python_capture(__u32 tgid)
{
	const struct python_layout *l = bpf_map_lookup_elem(&python_procs, &tgid);
	struct python_walk w = {};
	struct task_struct *task;
	struct python_stack *s;
	__u32 zero = 0;
	__u64 tstate, frame;

	if (!l)
		return NULL;
	s = bpf_map_lookup_elem(&python_scratch, &zero);
	if (!s)
		return NULL;
	s->count = 0;
	s->flags = 0;
	s->generation = l->generation;
	task = bpf_get_current_task_btf();
	tstate = read_ptr(task->thread.fsbase + l->tsd_offset);
	if (!tstate) {
		s->flags = PY_STACK_NO_THREAD;
		return s;
	}
	frame = read_ptr(tstate + l->tstate_frame);
	if (l->cframe_frame != PY_NO_OFFSET && frame)
		frame = read_ptr(frame + l->cframe_frame);
	w.l = l;
	w.s = s;
	w.frame = frame;
	w.tgid = tgid;
	/* Twice the bound: 3.12's shim frames take a turn each. */
	bpf_loop(CONNLEAK_PY_FRAMES * 2, walk_frame, &w, 0);
	if (w.frame && w.n >= CONNLEAK_PY_FRAMES)
		s->flags |= PY_STACK_TRUNCATED;
	s->count = w.n;
	return s;
}

/* A forked child runs the same interpreter image: same layout. */
static __always_inline void python_fork(__u32 parent_tgid, __u32 child_tgid)
{
	struct python_layout *l = bpf_map_lookup_elem(&python_procs, &parent_tgid);

	if (l)
		bpf_map_update_elem(&python_procs, &child_tgid, l, BPF_ANY);
}

/* Bumped at each exec of a traced process: userspace looks at a process it
 * found not to be Python again only after some traced process exec'ed (a
 * stat of /proc/PID/exe per process every 100 ms cost a quarter of
 * connleak's CPU at 1,000 processes). */
volatile __u64 traced_execs;

/* exec replaces the image: userspace looks at the new one. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(python_exec, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);

	bpf_map_delete_elem(&python_procs, &tgid);
	if (bpf_map_lookup_elem(&procs, &tgid))
		__sync_fetch_and_add(&traced_execs, 1);
	return 0;
}

#endif /* CONNLEAK_PYTHON_BPF_H */
