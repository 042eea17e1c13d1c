// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* uprobe_floor: BPF programs that do nothing, so that attaching them
 * measures what a uprobe or uretprobe hit costs on this machine by itself:
 * the floor under any tracer's per-event cost. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int noop_entry(struct pt_regs *ctx)
{
	return 0;
}

SEC("uretprobe")
int noop_return(struct pt_regs *ctx)
{
	return 0;
}

/* ---- ops: what one helper call or map operation adds to a uprobe's
 * program on this machine (uprobe_floor ops). Each program does its
 * operation OPS_PER_HIT times on floor_push; op_base does only what they
 * all share (the key), so the difference over it, divided by
 * OPS_PER_HIT, is one operation's cost. The map and key shapes are
 * connleak's live-handle map's (conn_key, conn_info). */
#define OPS_PER_HIT 4

struct op_key {
	__u32 tgid;
	__u32 pad;
	__u64 conn;
};

struct op_value {
	__u64 v[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct op_key);
	__type(value, struct op_value);
} op_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct op_value);
} op_task SEC(".maps");

__u64 op_counter;
__u64 op_sink;

static __always_inline struct op_key op_key_of(struct pt_regs *ctx, int i)
{
	struct op_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .conn = PT_REGS_PARM1(ctx) * 64 + i };
	return k;
}

SEC("uprobe")
int op_base(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		op_sink += k.conn;
	}
	return 0;
}

/* A hit: userspace keeps OPS_PER_HIT keys of this thread's in the map. */
SEC("uprobe")
int op_lookup(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		struct op_key fixed = { .tgid = k.tgid, .conn = i };
		op_sink += k.conn + (bpf_map_lookup_elem(&op_hash, &fixed) != NULL);
	}
	return 0;
}

/* An insert and its delete: a connect and its PQfinish. */
SEC("uprobe")
int op_update_delete(struct pt_regs *ctx)
{
	struct op_value v = {};
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		k.conn |= 1ULL << 62; /* never one of op_lookup's keys */
		bpf_map_update_elem(&op_hash, &k, &v, BPF_ANY);
		bpf_map_delete_elem(&op_hash, &k);
		op_sink += k.conn;
	}
	return 0;
}

SEC("uprobe")
int op_ktime(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		op_sink += k.conn + bpf_ktime_get_ns();
	}
	return 0;
}

SEC("uprobe")
int op_task_storage(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		struct op_value *v = bpf_task_storage_get(&op_task, bpf_get_current_task_btf(), 0,
							  BPF_LOCAL_STORAGE_GET_F_CREATE);
		op_sink += k.conn + (v != NULL);
	}
	return 0;
}

SEC("uprobe")
int op_atomic_add(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		__sync_fetch_and_add(&op_counter, 1);
		op_sink += k.conn;
	}
	return 0;
}

/* 64 bytes of the caller's stack, as a stack walk reads a window. */
SEC("uprobe")
int op_read_user(struct pt_regs *ctx)
{
	__u64 buf[8];
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		if (bpf_probe_read_user(buf, sizeof(buf), (void *)PT_REGS_SP(ctx)) == 0)
			op_sink += buf[0];
		op_sink += k.conn;
	}
	return 0;
}

/* The same insert and delete in an open-addressed array (8 slots probed
 * from the key's hash, the key claimed by compare-and-swap): what a
 * live-handle table without hash-map helper calls would cost. */
#define OP_SLOTS (1 << 18)
#define OP_PROBES 8

struct op_slot {
	__u64 key; /* 0: free */
	__u64 v[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OP_SLOTS);
	__type(key, __u32);
	__type(value, struct op_slot);
} op_array SEC(".maps");

static __always_inline __u32 op_hash32(__u64 key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (__u32)key;
}

SEC("uprobe")
int op_array_insert_delete(struct pt_regs *ctx)
{
	for (int i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = op_key_of(ctx, i);
		__u64 key = ((__u64)k.tgid << 44) ^ k.conn ^ (1ULL << 63);
		__u32 h = op_hash32(key);
		struct op_slot *mine = NULL;

		for (int j = 0; j < OP_PROBES; j++) {
			__u32 idx = (h + j) & (OP_SLOTS - 1);
			struct op_slot *s = bpf_map_lookup_elem(&op_array, &idx);

			if (s && __sync_val_compare_and_swap(&s->key, 0, key) == 0) {
				s->v[0] = k.conn;
				mine = s;
				break;
			}
		}
		/* The delete looks the key up again, as PQfinish would. */
		for (int j = 0; mine && j < OP_PROBES; j++) {
			__u32 idx = (h + j) & (OP_SLOTS - 1);
			struct op_slot *s = bpf_map_lookup_elem(&op_array, &idx);

			if (s && s->key == key) {
				__sync_val_compare_and_swap(&s->key, key, 0);
				break;
			}
		}
		op_sink += k.conn;
	}
	return 0;
}
