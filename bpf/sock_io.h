/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Traffic on libpq's sockets: when each last moved bytes, and the send that
 * began its latest unit of work (its "last user"). Shared by connleak.bpf.c
 * (the send/recv hooks, sock_io.bpf.h), sockets.bpf.c (which makes an entry
 * when libpq connects a socket) and the userspace loaders.
 *
 * A unit of work begins at the first send after a receive (or the first
 * send ever) while the handle is idle: libpq's xactStatus is PQTRANS_IDLE
 * and its status CONNECTION_OK (offsets per libpq file, from libpq's own
 * accessors, carried by the socket's entry), or, where the offsets are
 * unknown, when the socket moved nothing for SOCK_IO_IDLE_GAP_NS. When the
 * kernel can walk its stack (stack_walk.bpf.h), the entry keeps the stack's
 * id (use_stack) and the stack goes out once per (process, stack id) as an
 * EVENT_USE_STACK; else a copy goes out as an acquire_event of kind
 * EVENT_LAST_USE, each time. */
#ifndef CONNLEAK_SOCK_IO_H
#define CONNLEAK_SOCK_IO_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Without libpq's offsets: a send after this long without traffic begins a
 * unit of work (a query inside a transaction rarely waits that long on the
 * client; a pool's next borrower usually does). */
#define SOCK_IO_IDLE_GAP_NS (100ULL * 1000 * 1000)

/* Per libpq socket (key: struct sock *). Made by sockets.bpf.c with the
 * socket's record, freed by userspace with the record. */
struct sock_io {
	__u32 tgid;          /* the process whose libpq connected it */
	__u32 use_tid;       /* thread of the send that began the latest unit of work */
	__u64 conn;          /* PGconn* */
	__u64 created_ns;    /* connect() */
	__u64 last_send_ns;  /* last send that moved bytes, 0: none */
	__u64 last_recv_ns;  /* last receive that moved bytes, 0: none */
	__u64 use_ns;        /* the send that began the latest unit of work, 0: none */
	__u64 uses;          /* units of work begun */
	__u32 status_off;    /* libpq_xact_layout of the libpq that made it */
	__u32 xact_off;
	/* TCP through sock_ops (sock_io.bpf.h): the kernel calls connleak on
	 * this socket's sends only, and its receive time comes from the TCP
	 * socket itself (icsk_ack.lrcvtime) at each send and each report. */
	__u64 tcp_rcv_at_send;  /* tcp_sock.bytes_received at the last send */
	__u64 tcp_rcv_timed;    /* tcp_sock.bytes_received when last_recv_ns was set */
	__u32 via_sock_ops;     /* 1: the send/recv tracepoints leave it alone */
	__u32 pad;
	__u64 use_stack;        /* stack id (stack_key) of the latest use's stack; 0: sent as a copy, or none */
};

/* Where a libpq file keeps what the send hook reads in a PGconn, from its
 * accessors PQstatus and PQtransactionStatus: the offsets of ConnStatusType
 * status and PGTransactionStatusType xactStatus, packed as the bpf cookie of
 * that file's PQconnectPoll probes (sockets.bpf.c), which copy it into each
 * socket's entry. Known before the probes exist, so a process's first
 * query already has it. SOCK_IO_NO_OFFSET: unknown (the gap rule applies). */
#define SOCK_IO_NO_OFFSET 0xffffffffU
#define SOCK_IO_LAYOUT_COOKIE(status, xact) (((__u64)(status) << 32) | (__u32)(xact))
#define SOCK_IO_UNKNOWN_LAYOUT SOCK_IO_LAYOUT_COOKIE(SOCK_IO_NO_OFFSET, SOCK_IO_NO_OFFSET)

/* sock_io_hooks[0]: whether the send/recv tracepoints are attached. */
struct sock_io_hooks {
	__u32 live;
};

/* The cgroups (ids: their directories' inode numbers) whose processes' TCP
 * connects meet connleak's sock_ops program: userspace attaches it to each
 * traced process's cgroup v2 directory (or, with --all, to the root, and then
 * sets SOCK_IO_ALL_CGROUPS). A traced process connecting from anywhere else
 * has its socket served by the tracepoints at once (sockets.bpf.c).
 * Userspace counts the processes whose cgroup does not fit. */
#define SOCK_IO_MAX_CGROUPS 256
#define SOCK_IO_ALL_CGROUPS 0

#define SOCK_IO_CONNECTION_OK 0 /* ConnStatusType */
#define SOCK_IO_PQTRANS_IDLE 0  /* PGTransactionStatusType */

#endif /* CONNLEAK_SOCK_IO_H */
