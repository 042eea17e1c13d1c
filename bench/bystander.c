/* bystander: a socket- and syscall-heavy process that never uses libpq, to
 * measure what a tracer attached to some other process costs everyone else.
 *
 *   bystander [-n ITERATIONS] [-f FORK_EVERY]
 *
 * One iteration: a loopback TCP connection to its own listener (connect,
 * accept, 64 bytes each way, close both ends), 8 round trips of 64 bytes over
 * a Unix socketpair, 8 getppid() calls and a thread created and joined; every
 * FORK_EVERY-th iteration (default 20) also a fork() whose child _exits at
 * once, waited for. connleak hooks process fork and exit kernel-wide, so the
 * fork and the thread are where a bystander could pay for it.
 *
 * Prints one line: bystander {"iterations":N,"elapsed_ns":E,"ns_per_iter":X,
 *                             "cpu_ns":C,"cpu_ns_per_iter":Y}
 * (cpu: user + kernel time of the process and of its forked children).
 * Traffic goes to 127.0.0.1 only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "bystander: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time, user + kernel, of this process and of the children it waited
 * for (the forked ones: a process's exit is paid in its own context). */
static uint64_t cpu_ns(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	uint64_t us = (uint64_t)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
				 kids.ru_stime.tv_sec) * 1000000ull +
		      (uint64_t)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
				 kids.ru_stime.tv_usec);
	return us * 1000;
}

static void xfer(int from, int to, char *buf, size_t len)
{
	if (write(from, buf, len) != (ssize_t)len)
		die("write");
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(to, buf + got, len - got);
		if (r <= 0)
			die("read");
		got += (size_t)r;
	}
}

static void *thread_noop(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	long iterations = 20000, fork_every = 20;
	int ch;
	while ((ch = getopt(argc, argv, "n:f:")) != -1) {
		if (ch == 'n')
			iterations = atol(optarg);
		else if (ch == 'f')
			fork_every = atol(optarg);
		else {
			fprintf(stderr, "usage: bystander [-n ITERATIONS] [-f FORK_EVERY]\n");
			return 2;
		}
	}
	int lsn = socket(AF_INET, SOCK_STREAM, 0);
	if (lsn < 0)
		die("socket");
	int one = 1;
	setsockopt(lsn, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof addr;
	if (bind(lsn, (struct sockaddr *)&addr, sizeof addr) || listen(lsn, 64) ||
	    getsockname(lsn, (struct sockaddr *)&addr, &alen))
		die("listen on 127.0.0.1");
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
		die("socketpair");
	char buf[64];
	memset(buf, 'x', sizeof buf);

	uint64_t c0 = cpu_ns(), t0 = now_ns();
	for (long i = 0; i < iterations; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0)
			die("socket");
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* Closed by the client first, so TIME_WAIT stays on the client
		 * side; SO_LINGER 0 sends RST and keeps no TIME_WAIT at all, so a
		 * long run cannot run out of ephemeral ports. */
		struct linger lg = {1, 0};
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		if (connect(c, (struct sockaddr *)&addr, sizeof addr))
			die("connect");
		int s = accept(lsn, NULL, NULL);
		if (s < 0)
			die("accept");
		xfer(c, s, buf, sizeof buf);
		xfer(s, c, buf, sizeof buf);
		close(c);
		close(s);
		for (int k = 0; k < 8; k++) {
			xfer(sp[0], sp[1], buf, sizeof buf);
			xfer(sp[1], sp[0], buf, sizeof buf);
		}
		for (int k = 0; k < 8; k++)
			syscall(SYS_getppid);
		pthread_t t;
		if (pthread_create(&t, NULL, thread_noop, NULL) || pthread_join(t, NULL))
			die("pthread");
		if (fork_every > 0 && i % fork_every == 0) {
			pid_t pid = fork();
			if (pid < 0)
				die("fork");
			if (pid == 0)
				_exit(0);
			int st;
			while (waitpid(pid, &st, 0) < 0)
				if (errno != EINTR)
					die("waitpid");
		}
	}
	uint64_t el = now_ns() - t0, cpu = cpu_ns() - c0;
	printf("bystander {\"iterations\":%ld,\"elapsed_ns\":%llu,\"ns_per_iter\":%.1f,\"cpu_ns\":%llu,"
	       "\"cpu_ns_per_iter\":%.1f}\n",
	       iterations, (unsigned long long)el, iterations ? (double)el / (double)iterations : 0.0,
	       (unsigned long long)cpu, iterations ? (double)cpu / (double)iterations : 0.0);
	return 0;
}
