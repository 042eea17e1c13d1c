/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The maps of sock_io.h that both BPF objects use: connleak's loader
 * creates them, the sockets loader reuses their fds (as with `procs`).
 * Include after vmlinux.h and bpf_helpers.h. */
#pragma once

#include "sock_io.h"
#include "sockets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCKETS_MAX_SOCKS);
	__type(key, __u64); /* struct sock * */
	__type(value, struct sock_io);
} sock_io SEC(".maps");

/* A mark on the sockets that have a sock_io entry: a send or receive on any
 * other socket of the machine ends at one pointer test (sk->sk_bpf_storage)
 * instead of a hash lookup. Freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} sock_io_mark SEC(".maps");

/* Whether the send/recv tracepoints are attached (entry 0, written by
 * userspace). They cost every socket of the machine, so userspace attaches
 * them only while a libpq socket needs them (Unix sockets; TCP where
 * sock_ops cannot take it): a new such socket finding them detached wakes
 * userspace through io_wake. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_io_hooks);
} sock_io_hooks SEC(".maps");

/* Cgroup ids the sock_ops program is attached over (SOCK_IO_MAX_CGROUPS,
 * sock_io.h); written by userspace. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SOCK_IO_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} sock_io_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} io_wake SEC(".maps");

/* Writes to sock_io entries, counted per CPU (no shared cache line on a
 * send): userspace sums them before it reads the map, and skips the walk of
 * 100,000 entries when the sum has not moved since its last walk. Bumped
 * after each write, so a write the walk missed leaves the sum moved; an
 * atomic add, as a cgroup program can be preempted on its CPU mid-update
 * (a plain one could then store back a count userspace already read). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sock_io_writes SEC(".maps");

static __always_inline void note_io_write(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sock_io_writes, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* A libpq socket the tracepoints must see: wake userspace if they are not
 * attached (a full ring means a wakeup is pending already). */
static __always_inline void need_io_tracepoints(void)
{
	__u32 zero = 0, one = 1;
	struct sock_io_hooks *h = bpf_map_lookup_elem(&sock_io_hooks, &zero);

	/* A full barrier before the load (the entry's insert must not pass
	 * it): userspace turns live off, then reads the entries. */
	if (h && !__sync_fetch_and_or(&h->live, 0))
		bpf_ringbuf_output(&io_wake, &one, sizeof(one), BPF_RB_FORCE_WAKEUP);
}

/* Whether connleak's sock_ops program will see the TCP connect the current
 * task is making: its cgroup is one userspace attached it over. */
static __always_inline bool sock_ops_covers_current(void)
{
	__u64 id = bpf_get_current_cgroup_id(), all = SOCK_IO_ALL_CGROUPS;

	return bpf_map_lookup_elem(&sock_io_cgroups, &id) || bpf_map_lookup_elem(&sock_io_cgroups, &all);
}
