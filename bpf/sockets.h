/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Types shared by sockets.bpf.c and the userspace loader (sockets_loader).
 *
 * The kernel side records, per traced process, who connected which socket:
 * the thread, the time, the peer, and the PGconn whose PQconnectPoll call
 * was running on that thread (0: opened outside libpq). Records are keyed by
 * the struct sock pointer and carry the socket's inode, the key userspace
 * joins with /proc/PID/fd. Nothing is streamed; what does not fit is counted
 * (sock_stats.dropped). */
#ifndef CONNLEAK_SOCKETS_H
#define CONNLEAK_SOCKETS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define SOCKETS_MAX_SOCKS 16384  /* records when userspace sets no size (it sets --max-conns); exit_held */
#define SOCKETS_MAX_DB_PATHS 64  /* --db-socket paths */
#define SOCKETS_PATH_LEN 108     /* sizeof(sockaddr_un.sun_path) */

/* Family of a record: AF_INET, AF_INET6 (TCP) or AF_UNIX (stream). */
#define SOCKETS_AF_UNIX 1
#define SOCKETS_AF_INET 2
#define SOCKETS_AF_INET6 10

struct sock_rec {
	__u32 tgid;
	__u32 tid;            /* thread that called connect() */
	__u64 conn;           /* PGconn* in PQconnectPoll on that thread, or 0 */
	__u64 inode;          /* the socket's inode: socket:[inode] in /proc/PID/fd */
	__u64 connect_ns;     /* connect() (TCP: SYN_SENT; Unix: before the connect) */
	__u64 established_ns; /* TCP: handshake completed */
	__u64 peer_closed_ns; /* TCP: FIN from the peer (CLOSE_WAIT) */
	__u64 closed_ns;      /* TCP: closed or closing on our side, or reset */
	__u16 family;
	__u16 port;           /* TCP peer port, host order */
	__u32 scratch;        /* kernel-side scratch, 0 in records */
	/* A record is TCP or Unix, never both: their addresses share the room
	 * (176 bytes a record, was 216; 100,000 records at scale, issue 16). */
	union {
		struct {
			__u8 addr[16];       /* TCP peer address; IPv4 in the first 4 bytes */
			__u8 local_addr[16]; /* TCP: our own address once established (same family as addr) */
			__u16 local_port;    /* TCP: our own port once established, host order; 0 before */
		};
		char path[SOCKETS_PATH_LEN]; /* Unix peer path; abstract names start with NUL */
	};
	__u16 pad[2];
};

/* A thread's latest PQconnectPoll call (task storage): the handle, and where
 * its libpq file keeps status and xactStatus (SOCK_IO_LAYOUT_COOKIE,
 * sock_io.h); where its return address sits, to tell whether it still runs. */
struct poll_call {
	__u64 conn;   /* PGconn* */
	__u64 layout;
	__u64 sp;     /* stack pointer at its entry: the return address's slot; 0 while written */
	__u64 ret;    /* the return address in that slot at entry */
};

/* Per traced process (key: tgid). */
struct sock_stats {
	__u64 dropped;     /* records the socks map had no room for */
	__u64 exit_walked; /* its fd table was read at exit (exit_held) */
	__u64 exit_dropped; /* sockets held at exit exit_held had no room for */
	__u64 io_dropped;   /* libpq sockets the sock_io map had no room for (no idle time, no last user) */
};

/* A socket a process still held when its last thread exited (key of
 * exit_held): what the kernel then closed for it. */
struct exit_key {
	__u32 tgid;
	__u32 pad;
	__u64 inode;
};

#define SOCKETS_MAX_EXIT_FDS 65536 /* fds looked at per exiting process */

#endif /* CONNLEAK_SOCKETS_H */
