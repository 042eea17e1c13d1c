/* tp_floor: what a program on the traffic hooks' tracepoints
 * (tp_btf/sock_send_length and sock_recv_length, which fire after every
 * send and receive of the machine) costs a process that is not traced.
 *
 *   tp_floor -- COMMAND [ARGS...]
 *       Attaches tp_floor.bpf.c's empty programs to both tracepoints, runs
 *       COMMAND, waits for it, detaches and exits with its status
 *       (bench/socket_io_cost.sh's "floor" configuration).
 *
 *   tp_floor ab [-n PAIRS] [-b BLOCK] [-p SEND_ID,RECV_ID]
 *       A loopback TCP echo in this process (64 bytes sent on one end and
 *       received on the other, BLOCK times per block), in blocks that
 *       alternate with the programs attached and detached (ABBA order), so
 *       that each pair of neighbouring blocks sees the same machine. The
 *       programs: the empty ones, or, with -p, two loaded programs by id
 *       (connleak's own sock_send and sock_recv: `connleak --no-sockets`
 *       loads them without attaching them). Prints one line of JSON: CPU ns
 *       per echo (this thread's user + system time) attached and detached,
 *       as medians over the pairs, and the median, quartiles and extremes
 *       of each pair's ratio.
 *
 *   tp_floor ab -o OPS_ID -c CGROUP2_DIR [-k echo|connect] [-n PAIRS] [-b BLOCK]
 *       The same with a loaded sock_ops program by id (connleak's
 *       sock_ops_io) attached to the cgroup v2 root in the A blocks instead
 *       (what TCP traffic of a process connleak does not trace pays for it).
 *       -k connect: each operation a loopback TCP connect, accept and close
 *       of both ends (the callbacks every TCP connection runs) instead of
 *       an echo. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tp_floor.skel.h"

static int run_command(char **argv)
{
	struct tp_floor_bpf *skel = tp_floor_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "tp_floor: cannot load the BPF programs (root? kernel 6.4+?)\n");
		return 1;
	}
	if (tp_floor_bpf__attach(skel)) {
		fprintf(stderr, "tp_floor: cannot attach to sock_send_length/sock_recv_length\n");
		tp_floor_bpf__destroy(skel);
		return 1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		perror("tp_floor: exec");
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		status = 1 << 8;
	tp_floor_bpf__destroy(skel);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static double thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* v sorted in place; the value at fraction q (0..1). */
static double quantile(double *v, int n, double q)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[(int)(q * (n - 1) + 0.5)];
}

static int echo_fds[2];

static void echo_setup(void)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(in);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || c < 0 || bind(l, (void *)&in, len) || listen(l, 1) || getsockname(l, (void *)&in, &len) ||
	    connect(c, (void *)&in, len) || (echo_fds[1] = accept(l, NULL, NULL)) < 0) {
		perror("tp_floor: echo setup");
		exit(1);
	}
	echo_fds[0] = c;
	close(l);
}

/* CPU ns per echo over n echoes. */
static double echo_block(long n)
{
	char buf[64] = { 0 };
	double t0 = thread_cpu_ns();
	for (long i = 0; i < n; i++)
		if (send(echo_fds[0], buf, sizeof(buf), 0) != sizeof(buf) ||
		    recv(echo_fds[1], buf, sizeof(buf), MSG_WAITALL) != sizeof(buf)) {
			perror("tp_floor: echo");
			exit(1);
		}
	return (thread_cpu_ns() - t0) / n;
}

/* CPU ns per loopback TCP connect + accept + close of both ends. */
static double connect_block(long n)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(in);
	static int l = -1;
	static struct sockaddr_in at;
	if (l < 0) {
		l = socket(AF_INET, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (void *)&in, len) || listen(l, 64) || getsockname(l, (void *)&in, &len)) {
			perror("tp_floor: listen");
			exit(1);
		}
		at = in;
	}
	double t0 = thread_cpu_ns();
	for (long i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM, 0), a;
		if (c < 0 || connect(c, (void *)&at, sizeof(at)) || (a = accept(l, NULL, NULL)) < 0) {
			perror("tp_floor: connect");
			exit(1);
		}
		/* the client closes last: its end goes to TIME_WAIT, not the listener's port */
		close(a);
		close(c);
	}
	return (thread_cpu_ns() - t0) / n;
}

struct hooks {
	int prog[2], link[2];
	int ops_prog, cgroup; /* -o: a sock_ops program on the cgroup v2 root */
};

static void attach(struct hooks *h)
{
	if (h->ops_prog >= 0) {
		h->link[0] = bpf_link_create(h->ops_prog, h->cgroup, BPF_CGROUP_SOCK_OPS, NULL);
		if (h->link[0] < 0) {
			fprintf(stderr, "tp_floor: cannot attach the sock_ops program\n");
			exit(1);
		}
		return;
	}
	for (int i = 0; i < 2; i++) {
		h->link[i] = bpf_raw_tracepoint_open(NULL, h->prog[i]);
		if (h->link[i] < 0) {
			fprintf(stderr, "tp_floor: cannot attach program %d\n", i);
			exit(1);
		}
	}
}

static void detach(struct hooks *h)
{
	for (int i = 0; i < (h->ops_prog >= 0 ? 1 : 2); i++)
		close(h->link[i]);
}

static int run_ab(int argc, char **argv)
{
	int pairs = 60, opt;
	long block = 5000;
	unsigned send_id = 0, recv_id = 0, ops_id = 0;
	const char *cgroup_dir = NULL;
	double (*block_op)(long) = echo_block;
	while ((opt = getopt(argc, argv, "n:b:p:o:c:k:")) != -1) {
		if (opt == 'o')
			ops_id = strtoul(optarg, NULL, 10);
		else if (opt == 'c')
			cgroup_dir = optarg;
		else if (opt == 'k' && (strcmp(optarg, "echo") == 0 || strcmp(optarg, "connect") == 0))
			block_op = strcmp(optarg, "echo") == 0 ? echo_block : connect_block;
		else if (opt == 'n')
			pairs = atoi(optarg);
		else if (opt == 'b')
			block = atol(optarg);
		else if (opt == 'p' && sscanf(optarg, "%u,%u", &send_id, &recv_id) == 2)
			continue;
		else
			return fprintf(stderr, "usage: tp_floor ab [-n PAIRS] [-b BLOCK] [-p SEND_ID,RECV_ID | -o OPS_ID -c "
			                       "CGROUP2_DIR] [-k echo|connect]\n"),
			       2;
	}
	if (pairs < 1 || block < 1)
		return fprintf(stderr, "tp_floor: -n and -b must be positive\n"), 2;
	struct tp_floor_bpf *skel = NULL;
	struct hooks h = { .ops_prog = -1, .cgroup = -1 };
	if (ops_id) {
		h.ops_prog = bpf_prog_get_fd_by_id(ops_id);
		h.cgroup = cgroup_dir ? open(cgroup_dir, O_RDONLY | O_DIRECTORY) : -1;
		if (h.ops_prog < 0 || h.cgroup < 0)
			return fprintf(stderr, "tp_floor: no program %u or no cgroup directory (-c)\n", ops_id), 1;
	} else if (send_id) {
		h.prog[0] = bpf_prog_get_fd_by_id(send_id);
		h.prog[1] = bpf_prog_get_fd_by_id(recv_id);
		if (h.prog[0] < 0 || h.prog[1] < 0)
			return fprintf(stderr, "tp_floor: no program %u or %u\n", send_id, recv_id), 1;
	} else {
		skel = tp_floor_bpf__open_and_load();
		if (!skel)
			return fprintf(stderr, "tp_floor: cannot load the BPF programs\n"), 1;
		h.prog[0] = bpf_program__fd(skel->progs.floor_send);
		h.prog[1] = bpf_program__fd(skel->progs.floor_recv);
	}
	echo_setup();
	block_op(block); /* warm up */
	double *on = calloc(pairs, sizeof(double)), *off = calloc(pairs, sizeof(double));
	double *ratio = calloc(pairs, sizeof(double)), *diff = calloc(pairs, sizeof(double));
	for (int i = 0; i < pairs; i++) {
		/* ABBA: attached first in even pairs, second in odd ones. */
		for (int k = 0; k < 2; k++) {
			if ((k == 0) == (i % 2 == 0)) {
				attach(&h);
				on[i] = block_op(block);
				detach(&h);
			} else {
				off[i] = block_op(block);
			}
		}
		ratio[i] = on[i] / off[i];
		diff[i] = on[i] - off[i];
	}
	printf("{\"programs\":\"%s\",\"op\":\"%s\",\"pairs\":%d,\"block\":%ld,\"attached_ns\":%.1f,\"detached_ns\":%.1f,"
	       "\"added_ns\":%.1f,\"ratio\":{\"median\":%.4f,\"q1\":%.4f,\"q3\":%.4f,\"min\":%.4f,\"max\":%.4f}}\n",
	       ops_id ? "sock_ops" : send_id ? "given" : "empty", block_op == echo_block ? "echo" : "connect", pairs, block, quantile(on, pairs, 0.5), quantile(off, pairs, 0.5),
	       quantile(diff, pairs, 0.5), quantile(ratio, pairs, 0.5), quantile(ratio, pairs, 0.25),
	       quantile(ratio, pairs, 0.75), quantile(ratio, pairs, 0), quantile(ratio, pairs, 1));
	tp_floor_bpf__destroy(skel);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "--") == 0)
		return run_command(argv + 2);
	if (argc >= 2 && strcmp(argv[1], "ab") == 0)
		return run_ab(argc - 1, argv + 1);
	fprintf(stderr, "usage: tp_floor -- COMMAND [ARGS...] | tp_floor ab [-n PAIRS] [-b BLOCK] [-p SEND_ID,RECV_ID | -o "
	                "OPS_ID -c CGROUP2_DIR] [-k echo|connect]\n");
	return 2;
}
