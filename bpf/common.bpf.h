/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What connleak.bpf.c and sockets.bpf.c share: the traced-process filter
 * (the `procs` map; connleak's loader creates it, the sockets loader reuses
 * its fd) and lookup-or-init of per-key stats. Include after vmlinux.h and
 * bpf_helpers.h. */
#pragma once

#include "connleak.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CONNLEAK_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct proc_stats);
} procs SEC(".maps");

/* The in-kernel filter: stats of a traced, still running process, or NULL. */
static __always_inline struct proc_stats *traced_proc(__u32 tgid)
{
	struct proc_stats *ps = bpf_map_lookup_elem(&procs, &tgid);

	if (!ps || ps->exited_ns)
		return NULL;
	return ps;
}

/* The value at `key`, first inserted as a copy of `init` if absent; NULL
 * when the map is full (the caller counts the drop). A racing insert of
 * the same key is fine: BPF_NOEXIST keeps whichever came first. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *init)
{
	void *val = bpf_map_lookup_elem(map, key);

	if (val)
		return val;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}
