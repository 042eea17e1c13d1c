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
