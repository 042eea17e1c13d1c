/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* --all: a process that enters a probed libpq is traced from that call on.
 * The probes sit only on libpq files, so whoever reaches them is a libpq
 * user: a process started after attach (or one that loaded a known libpq
 * with dlopen) is counted from its first connect, with no hook on exec or
 * mmap that every other process would pay. connleak itself is never
 * traced. Include after common.bpf.h. */
#pragma once

/* Set before load. */
const volatile bool trace_all = false;
const volatile __u32 self_tgid = 0;

/* Bumped after a process enters procs (an adoption, a fork of a traced
 * process) or is marked exited: userspace's Python watcher looks at the
 * process list (every 0.1 s) only when it moved. */
volatile __u64 procs_changes;

/* traced_proc(), and with trace_all a process not yet in the filter joins
 * it (BPF_NOEXIST: never resets an entry userspace or a fork made). A full
 * map leaves it untraced; userspace says so (see host_watch). */
static __always_inline struct proc_stats *traced_or_adopted(__u32 tgid)
{
	struct proc_stats zero = {};

	if (trace_all && tgid != self_tgid && !bpf_map_lookup_elem(&procs, &tgid) &&
	    bpf_map_update_elem(&procs, &tgid, &zero, BPF_NOEXIST) == 0)
		__sync_fetch_and_add(&procs_changes, 1);
	return traced_proc(tgid);
}
