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
