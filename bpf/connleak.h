/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types shared by connleak.bpf.c and the userspace loader.
 *
 * Everything the kernel side learns is kept in bounded maps (counters and
 * live handles), never streamed, so a slow reader loses nothing. Every
 * insertion that does not fit is counted in proc_stats.dropped_*. */
#ifndef CONNLEAK_H
#define CONNLEAK_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Default map sizes; the loader may change them before load (--max-*).
 * Room for 100,000 live handles in 1,000 processes (a host, --all): the
 * hash maps are preallocated, so this costs 25 MiB of handles (and their
 * inherited twins) and 0.7 MiB of processes whether used or not. */
#define CONNLEAK_MAX_PROCS 4096
#define CONNLEAK_MAX_CONNS 131072
#define CONNLEAK_MAX_SITES 8192
/* Stack events: bytes of user stack copied per acquisition (the loader may
 * change it before load, --stack-size; 0: no stacks), and the ring buffer. */
#define CONNLEAK_STACK_SIZE 8192
#define CONNLEAK_STACK_SIZE_MAX 65536
#define CONNLEAK_EVENTS_SIZE (4 << 20) /* at the least; grows with --stack-size (loader) */

/* Per traced process (key: tgid). Its presence is the in-kernel filter:
 * probes ignore any process without an entry or whose entry is exited. */
struct proc_stats {
	__u64 acquired;           /* PGconn handed to the application */
	__u64 released;           /* PQfinish of a handle seen acquired */
	__u64 released_untracked; /* PQfinish of a handle never seen acquired */
	__u64 pings;              /* PQping/PQpingParams calls (not acquisitions) */
	__u64 resets;             /* PQreset/PQresetStart calls (same handle) */
	__u64 dropped_conns;      /* acquisitions the live-handle map had no room for */
	__u64 dropped_sites;      /* acquisitions the site map had no room for */
	__u64 dropped_threads;    /* outermost calls the thread map had no room for */
	__u64 dropped_children;   /* forked children the process map had no room for */
	__u64 dropped_stacks;     /* stack or release events the ring buffer had no room for */
	__u64 exited_ns;          /* bpf_ktime_get_ns() when the last thread exited, else 0 */
	char comm[16];            /* set at exit, for processes gone before userspace looked */
	__u64 inherited;          /* live handles of the parent copied in at fork */
	__u64 released_inherited; /* PQfinish of a handle inherited at fork */
	__u64 dropped_inherited;  /* inherited handles the inherited map had no room for */
	__u64 entered;            /* EVENT_ENTERED sent (its first outermost libpq call) */
	__u64 last_poll_ns;       /* its latest PQconnectPoll entry (sockets.bpf.c; 0: none seen):
				   * a connecting handle changes only there. Here, not in sock_stats:
				   * the probe finds this entry anyway (the filter), one lookup */
};

/* Live handle (key: conn_key). Deleted by PQfinish. */
struct conn_key {
	__u32 tgid;
	__u32 pad;
	__u64 conn; /* the PGconn* in the target's address space */
};

struct conn_info {
	__u64 start_ns;  /* entry of the outermost connect call */
	__u64 acquired_ns; /* return of the outermost connect call */
	__u64 site;      /* return address into the caller: the acquiring site */
	__u32 tid;
	__u32 pad;
	__u64 stack;     /* its stack's id (stack_key), counted in the kernel; 0: not */
};

/* Counters per acquiring site (key: site_key). */
struct site_key {
	__u32 tgid;
	__u32 pad;
	__u64 site;
};

#define CONNLEAK_MODULE_LEN 64

struct site_stats {
	__u64 acquired;
	__u64 released;
	__u64 hold_ns_total; /* sum of hold times of released handles */
	__u64 hold_ns_max;   /* longest hold of a released handle */
	/* Where the site lies, found once when the site is first seen, so it
	 * can be named even after the process exited and its maps are gone. */
	__u64 file_offset;   /* offset of the site in the mapped file */
	__u64 inode;
	__u32 dev;           /* kernel encoding: major << 20 | minor */
	__u32 pad;
	char module[CONNLEAK_MODULE_LEN]; /* file name of the mapping, or "" */
};

/* Per-thread state while inside a libpq connect or ping call (task storage).
 * libpq nests its own API (PQconnectdb -> PQconnectStart, PQping ->
 * PQconnectStart + PQfinish), so only the outermost call counts. */
enum call_kind {
	CALL_CONNECT = 1,
	CALL_PING = 2,
};

/* A thread's last stack walk of one kind (stack_walk.bpf.h, capture_stack):
 * how much of the stack it read and, when it was complete, short, and its
 * steps all rsp-based, its return addresses and where each lay, so the
 * same stack next time is recognised from the words alone. */
#define CONNLEAK_MEMO_FRAMES 32

struct walk_memo {
	__u32 span;  /* bytes above sp the walk read: the window the next one reads */
	__u32 count; /* return addresses in pcs[]; 0: nothing remembered */
	__u64 family;
	__u64 hash;  /* the stack id's native part: family and pcs[] mixed */
	__u64 pcs[CONNLEAK_MEMO_FRAMES];
	__u16 slots[CONNLEAK_MEMO_FRAMES]; /* slots[i]: where pcs[i] lay, bytes above sp (i >= 1) */
};

struct thread_call {
	__u64 start_ns;
	__u64 sp;  /* stack pointer at the outermost call's entry */
	__u32 depth; /* calls in progress, the outermost included; 0: none */
	__u32 kind;
	/* Apart, as a thread's acquiring stacks and its last-use stacks differ. */
	struct walk_memo acquire_walk; /* call_exit's */
	struct walk_memo use_walk;     /* begin_use's (sock_io.bpf.h) */
};

/* Events (ring buffer): what maps cannot hold. Each acquisition sends the
 * caller's registers and the top of its stack, taken at the return of the
 * outermost connect call (so the stack is the caller's, unwound in
 * userspace with DWARF CFI); each release of a handle so described sends
 * its hold time, so userspace can attribute releases to stacks. */
enum event_kind {
	EVENT_ACQUIRE = 1,
	EVENT_RELEASE = 2,
	EVENT_PY_CODE = 3, /* python_code_event */
	EVENT_STACK = 4,   /* stack_event */
	EVENT_LAST_USE = 5, /* acquire_event: the send that began a unit of work (sock_io.h) */
	EVENT_ENTERED = 6,  /* process_event */
	EVENT_USE_STACK = 7, /* stack_event: a last user's stack, walked in the kernel (sock_io.h) */
};

/* A process's first call into libpq: userspace reads its mappings at once,
 * while the process surely lives (the connect takes a few ms), since the
 * stacks of a process that exits right after connecting arrive when its
 * /proc/PID/maps is gone. */
struct process_event {
	__u32 kind; /* EVENT_ENTERED */
	__u32 tgid;
};

/* Python frames of the acquiring thread, taken in the kernel at the
 * acquisition (see python.bpf.h): the code object and the instruction
 * each frame was executing, innermost first. */
#define CONNLEAK_PY_FRAMES 32
#define CONNLEAK_PY_CODES 16384 /* code objects described, LRU (seen_codes) */

enum python_frame_flags {
	PY_FRAME_ENTRY = 1, /* the first frame its _PyEval_EvalFrameDefault call ran */
};

struct python_frame {
	__u64 code;  /* PyCodeObject* in the target */
	__u32 instr; /* code units from the first instruction (the last one executed) */
	__u32 flags; /* python_frame_flags */
};

enum python_stack_flags {
	PY_STACK_TRUNCATED = 1, /* more than CONNLEAK_PY_FRAMES frames: the outermost are missing */
	PY_STACK_NO_THREAD = 2, /* a Python process, but no thread state found for the thread */
};

/* Where a Python interpreter keeps what the kernel reads (key: tgid).
 * Filled by userspace when it recognises the interpreter (python_layout.cpp),
 * copied to forked children, deleted at exec. Offsets in bytes. */
#define PY_NO_OFFSET 0xffff
struct python_layout {
	__u64 tsd_offset;       /* thread's fs base -> its PyThreadState* (pthread TSD slot) */
	__u32 generation;       /* changes with each fill: names code objects of this image */
	__u16 tstate_frame;     /* PyThreadState -> cframe (3.11, 3.12) or current_frame (3.13) */
	__u16 cframe_frame;     /* _PyCFrame -> current_frame; PY_NO_OFFSET when none (3.13) */
	__u16 frame_code, frame_previous, frame_prev_instr;
	__u16 frame_is_entry;   /* bool is_entry (3.11); PY_NO_OFFSET: entries by owner */
	__u16 frame_owner;      /* char owner; FRAME_OWNED_BY_CSTACK (3) marks entries (3.12+) */
	__u16 code_adaptive;    /* first instruction in the code object */
	__u16 code_filename, code_qualname, code_linetable, code_firstlineno;
	__u16 unicode_state;    /* PyASCIIObject.state: bit 6 is "ascii" */
	__u16 unicode_ascii_data, unicode_utf8; /* ASCII data; the UTF-8 pointer of others */
	__u16 bytes_size, bytes_data;
	__u16 pad[3];
};

#define CONNLEAK_PY_NAME_LEN 128
#define CONNLEAK_PY_FILE_LEN 256
#define CONNLEAK_PY_LINETABLE_LEN 1024

/* A code object described once per (process, layout generation), before
 * the first acquire event naming it, so userspace can name frames even
 * after the process exited. */
struct python_code_event {
	__u32 kind;         /* EVENT_PY_CODE */
	__u32 tgid;
	__u64 code;
	__u32 generation;
	__s32 firstlineno;
	__u32 linetable_len;   /* bytes of linetable[] sent */
	__u32 linetable_size;  /* the line table's real size */
	char qualname[CONNLEAK_PY_NAME_LEN];
	char filename[CONNLEAK_PY_FILE_LEN];
	__u8 linetable[CONNLEAK_PY_LINETABLE_LEN];
};

/* x86-64 registers in DWARF order (rax rdx rcx rbx rsi rdi rbp rsp r8-r15),
 * then the return address (rip). */
#define CONNLEAK_NREGS 17

struct acquire_event {
	__u32 kind;        /* EVENT_ACQUIRE */
	__u32 tgid;
	__u32 tid;
	__u32 stack_len;   /* bytes of data[] that hold the stack from regs[7] (sp) */
	__u64 conn;
	__u64 start_ns;    /* as in conn_info: together with tgid and conn, the join key */
	__u64 acquired_ns;
	__u64 site;        /* the kernel's site key (return address into the caller) */
	__u64 regs[CONNLEAK_NREGS];
	__u32 py_count;    /* python frames in py[], innermost first; 0: none */
	__u32 py_flags;    /* python_stack_flags */
	__u32 py_generation; /* of the process's python_layout */
	__u32 py_pad;
	__u64 family;      /* unwind_key.family of the process: what userspace learns goes there */
	struct python_frame py[CONNLEAK_PY_FRAMES];
	__u8 data[];       /* stack_len bytes: the record ends there */
};

struct release_event {
	__u32 kind;        /* EVENT_RELEASE */
	__u32 tgid;
	__u64 conn;
	__u64 start_ns;
	__u64 hold_ns;
	__u64 acquired_ns;
	__u64 stack;       /* conn_info.stack: counted in the kernel, sent for its hold time only */
};

/* Handles whose release userspace wants to hear of although their stack is
 * counted in the kernel (key: conn_key; value: their acquired_ns): those
 * reported as leaks, whose release notice says how long they were held. */
#define CONNLEAK_RELEASE_WATCH 8192

/* Stacks walked in the kernel (stack_walk.bpf.h). Userspace learns, from
 * each stack it unwinds with DWARF CFI, how to step from each return
 * address to its caller's (unwind_steps); once every return address of a
 * stack is known, the kernel walks it itself (one 8-byte read a frame),
 * hashes the return addresses and Python frames into a stack id, counts per
 * (process, stack id) in stack_counts, and sends the stack (stack_event)
 * only the first time. A stack with a return address not learnt yet goes
 * the old way: an acquire_event with a copy of the stack. */
#define CONNLEAK_STACK_FRAMES 128     /* return addresses walked, at most */
#define CONNLEAK_UNWIND_STEPS 16384   /* learnt return addresses (LRU) */

/* Key: a return address in the address space of a process family (a
 * process and the children it forked, which share its mappings). */
struct unwind_key {
	__u64 family; /* the address space's layout (stack_walk.bpf.h): same for forked children */
	__u64 pc;
};

enum unwind_step_flags {
	UNWIND_OUTERMOST = 1, /* the CFI says there is no caller: the stack ends here */
	UNWIND_CFA_RBP = 2,   /* CFA = rbp + cfa_offset (else rsp + cfa_offset) */
};

/* How to step from a frame at `pc` to its caller: CFA = reg + cfa_offset,
 * the caller's return address at CFA - 8, its rsp = CFA, its rbp at
 * CFA + rbp_offset (0: unchanged). */
struct unwind_step {
	__s32 cfa_offset;
	__s16 rbp_offset;
	__u16 flags; /* unwind_step_flags */
};

struct stack_key {
	__u32 tgid;
	__u32 pad;
	__u64 stack; /* hash of the return addresses and Python frames; never 0 */
};

/* Counters per (process, stack). The kernel site's counters (site_stats)
 * count the same acquisitions too: a stack's are a part of its site's.
 * An entry with site 0 is a last user's stack (sock_io.h), no acquisition's:
 * only its `sent` is used, so each is sent once per process. */
struct stack_stats {
	__u64 acquired;
	__u64 released;
	__u64 hold_ns_total;
	__u64 hold_ns_max;
	__u64 site;  /* the kernel's site (return address into the caller) */
	__u32 sent;  /* its stack_event is in the ring (0: not yet, sent at the next acquisition) */
	__u32 pad;
};

/* A stack the kernel walked, sent once per (process, stack id). */
struct stack_event {
	__u32 kind;        /* EVENT_STACK */
	__u32 tgid;
	__u64 stack;
	__u64 site;
	__u32 pc_count;    /* return addresses in pcs[], innermost (the site) first */
	__u32 py_count;    /* as in acquire_event */
	__u32 py_flags;
	__u32 py_generation;
	__u64 pcs[CONNLEAK_STACK_FRAMES];
	struct python_frame py[CONNLEAK_PY_FRAMES];
};

#endif /* CONNLEAK_H */
