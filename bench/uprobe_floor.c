/* uprobe_floor: what a bare uprobe and uprobe+uretprobe cost on this machine,
 * the floor under any uprobe tracer's per-event cost.
 *
 *   uprobe_floor self [-n CALLS] [-r ROUNDS] [-b BLOCK]
 *       Calls two no-op functions of its own, with a no-op uprobe, then with a
 *       no-op uprobe + uretprobe: CALLS calls in blocks of BLOCK, alternating
 *       with an identical unprobed twin, so that the difference is what the
 *       probe adds even while the machine's speed drifts. ROUNDS rounds. Prints
 *       one JSON object: per function and probe kind, per round, the added
 *       CPU ns per call (this thread's user + kernel time), the median over
 *       block pairs, the added wall-clock ns, the unprobed CPU ns. The functions
 *       start like the libpq functions connleak probes, because a uprobe's
 *       cost depends on the first instruction: floor_push starts with
 *       `push %rbp` (PQconnectStart & co.: the kernel emulates it), floor_test
 *       with `test %rdi,%rdi` (PQfinish: executed out of line, one more trap).
 *
 *   uprobe_floor ops [-n CALLS] [-r ROUNDS] [-b BLOCK]
 *       What one helper call or map operation adds to a uprobe's program:
 *       programs doing 4 of one operation (a hash lookup, a hash insert and
 *       its delete, a clock read, a task storage get, an atomic add, a
 *       64-byte user read, an insert and delete in an open-addressed array)
 *       on floor_push, each measured like `self`; prints
 *       per operation its cost over a program doing only their common part.
 *
 *   uprobe_floor attach LIBRARY [FUNC[:ret]|FUNC+OFF ...] -- COMMAND [ARGS...]
 *       Attaches the no-op programs to FUNC in LIBRARY (entry, and return with
 *       :ret; FUNC+OFF: entry probe OFF bytes into FUNC), for every process
 *       like connleak does, runs COMMAND, waits for
 *       it and exits with its status. With no FUNC, connleak's own probe set
 *       on libpq. The same workload under this and under connleak splits
 *       connleak's cost into the probes' floor and its programs' work.
 *
 * Programs are attached with pid -1 (any process), as connleak attaches. */
#define _GNU_SOURCE
#include <bpf/libbpf.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uprobe_floor.skel.h"

/* The no-op functions, in assembly so their first instruction is known. */
__asm__(".text\n"
	".globl floor_push\n"
	".type floor_push, @function\n"
	"floor_push:\n"
	"	push %rbp\n"
	"	mov %rsp, %rbp\n"
	"	pop %rbp\n"
	"	ret\n"
	".size floor_push, .-floor_push\n"
	".globl floor_test\n"
	".type floor_test, @function\n"
	"floor_test:\n"
	"	test %rdi, %rdi\n"
	"	je 1f\n"
	"1:	ret\n"
	".size floor_test, .-floor_test\n"
	/* Unprobed twins, called in alternation with the probed ones. */
	".globl floor_push_twin\n"
	".type floor_push_twin, @function\n"
	"floor_push_twin:\n"
	"	push %rbp\n"
	"	mov %rsp, %rbp\n"
	"	pop %rbp\n"
	"	ret\n"
	".size floor_push_twin, .-floor_push_twin\n"
	".globl floor_test_twin\n"
	".type floor_test_twin, @function\n"
	"floor_test_twin:\n"
	"	test %rdi, %rdi\n"
	"	je 2f\n"
	"2:	ret\n"
	".size floor_test_twin, .-floor_test_twin\n");
void floor_push(long arg);
void floor_test(long arg);
void floor_push_twin(long arg);
void floor_test_twin(long arg);

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "uprobe_floor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN || getenv("UPROBE_FLOOR_VERBOSE"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct uprobe_floor_bpf *load(void)
{
	struct uprobe_floor_bpf *skel = uprobe_floor_bpf__open_and_load();
	if (!skel)
		die("cannot load the BPF programs: %s", strerror(errno));
	return skel;
}

static struct bpf_link *attach(const struct bpf_program *prog, const char *path, const char *func, int ret,
			       size_t offset)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ret, .func_name = func);
	struct bpf_link *l = bpf_program__attach_uprobe_opts(prog, -1, path, offset, &opts);
	if (!l)
		die("cannot attach %s to %s in %s: %s", ret ? "uretprobe" : "uprobe", func, path, strerror(errno));
	return l;
}

/* ---- self ---- */

enum { PROBE_ENTRY, PROBE_BOTH, NPROBE };
static const char *const probe_names[] = {"uprobe", "uprobe_uretprobe"};

struct fn {
	const char *name, *first_insn;
	void (*call)(long), (*twin)(long);
};

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU ns (user + kernel: a probe hit is handled on the calling thread) of
 * n calls; adds the wall-clock ns to *wall. */
static uint64_t time_calls(void (*volatile fp)(long), long n, uint64_t *wall)
{
	uint64_t c0 = cpu_ns(), t0 = now_ns();
	for (long i = 0; i < n; i++)
		fp(i + 1);
	*wall += now_ns() - t0;
	return cpu_ns() - c0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The probed function and its unprobed twin in alternating blocks: the
 * difference is what the probe adds, with the machine's drift cancelled. */
static void measure(const struct fn *f, long calls, long block, double *added, double *added_med,
		    double *added_wall, double *base)
{
	long pairs = calls / block;
	if (pairs < 1)
		pairs = 1;
	double *d = calloc((size_t)pairs, sizeof *d);
	uint64_t cp = 0, ct = 0, wp = 0, wt = 0;
	if (!d)
		die("out of memory");
	time_calls(f->call, block, &wp); /* warm up */
	time_calls(f->twin, block, &wt);
	wp = wt = 0;
	for (long k = 0; k < pairs; k++) {
		uint64_t a, b;
		if (k % 2 == 0) {
			a = time_calls(f->call, block, &wp);
			b = time_calls(f->twin, block, &wt);
		} else {
			b = time_calls(f->twin, block, &wt);
			a = time_calls(f->call, block, &wp);
		}
		cp += a;
		ct += b;
		d[k] = ((double)a - (double)b) / (double)block;
	}
	double n = (double)(pairs * block);
	*added = ((double)cp - (double)ct) / n;
	*added_wall = ((double)wp - (double)wt) / n;
	*added_med = median(d, (int)pairs);
	*base = (double)ct / n;
	free(d);
}

/* The -n CALLS -r ROUNDS -b BLOCK options of `self` and `ops`. */
struct timing_opts {
	long calls, block;
	int rounds;
};

static void parse_timing_opts(int argc, char **argv, struct timing_opts *o, const char *usage)
{
	int ch;
	while ((ch = getopt(argc, argv, "n:r:b:")) != -1) {
		if (ch == 'n')
			o->calls = atol(optarg);
		else if (ch == 'r')
			o->rounds = atoi(optarg);
		else if (ch == 'b')
			o->block = atol(optarg);
		else
			die("usage: %s", usage);
	}
	if (o->calls <= 0 || o->block <= 0 || o->rounds <= 0 || o->rounds > 1000)
		die("bad -n, -b or -r");
}

/* This program's own file: the probes go on its functions. */
static void self_exe(char exe[PATH_MAX])
{
	ssize_t len = readlink("/proc/self/exe", exe, PATH_MAX - 1);
	if (len <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	exe[len] = 0;
}

static int run_self(int argc, char **argv)
{
	struct timing_opts o = {.calls = 5000, .block = 100, .rounds = 3};
	parse_timing_opts(argc, argv, &o, "uprobe_floor self [-n CALLS] [-r ROUNDS] [-b BLOCK]");
	const long calls = o.calls, block = o.block;
	const int rounds = o.rounds;
	char exe[PATH_MAX];
	self_exe(exe);
	struct uprobe_floor_bpf *skel = load();
	const struct fn fns[] = {{"floor_push", "push %rbp", floor_push, floor_push_twin},
				 {"floor_test", "test %rdi,%rdi", floor_test, floor_test_twin}};
	enum { NFN = sizeof fns / sizeof fns[0] };
	static double added[NFN][NPROBE][1000], added_med[NFN][NPROBE][1000], added_wall[NFN][NPROBE][1000];
	static double base[NFN][NPROBE][1000];

	for (int r = 0; r < rounds; r++)
		for (int f = 0; f < NFN; f++)
			for (int p = 0; p < NPROBE; p++) {
				struct bpf_link *entry = attach(skel->progs.noop_entry, exe, fns[f].name, 0, 0), *ret = NULL;
				if (p == PROBE_BOTH)
					ret = attach(skel->progs.noop_return, exe, fns[f].name, 1, 0);
				measure(&fns[f], calls, block, &added[f][p][r], &added_med[f][p][r], &added_wall[f][p][r],
					&base[f][p][r]);
				bpf_link__destroy(ret);
				bpf_link__destroy(entry);
			}

	printf("{\"calls\":%ld,\"block\":%ld,\"rounds\":%d,\"functions\":{", calls, block, rounds);
	for (int f = 0; f < NFN; f++) {
		printf("%s\"%s\":{\"first_insn\":\"%s\"", f ? "," : "", fns[f].name, fns[f].first_insn);
		for (int p = 0; p < NPROBE; p++) {
			printf(",\"%s\":{", probe_names[p]);
			double (*series[])[NPROBE][1000] = {added, added_med, added_wall, base};
			const char *names[] = {"added_cpu_ns", "added_cpu_ns_block_median", "added_wall_ns", "unprobed_cpu_ns"};
			for (int k = 0; k < 4; k++) {
				printf("%s\"%s\":[", k ? "," : "", names[k]);
				for (int r = 0; r < rounds; r++)
					printf("%s%.1f", r ? "," : "", series[k][f][p][r]);
				printf("]");
			}
			printf("}");
		}
		printf("}");
	}
	printf("}}\n");
	uprobe_floor_bpf__destroy(skel);
	return 0;
}

/* ---- ops ---- */

/* Each op program on floor_push in turn, measured like `self`; its cost
 * over op_base (the same key work), per operation (OPS_PER_HIT a hit). */
#define OPS_PER_HIT 4

struct op_key {
	uint32_t tgid, pad;
	uint64_t conn;
};

static int run_ops(int argc, char **argv)
{
	struct timing_opts o = {.calls = 20000, .block = 100, .rounds = 5};
	parse_timing_opts(argc, argv, &o, "uprobe_floor ops [-n CALLS] [-r ROUNDS] [-b BLOCK]");
	const long calls = o.calls, block = o.block;
	const int rounds = o.rounds;
	char exe[PATH_MAX];
	self_exe(exe);
	struct uprobe_floor_bpf *skel = load();
	/* op_lookup's keys: hits. */
	uint64_t value[5] = {0};
	for (uint64_t i = 0; i < OPS_PER_HIT; i++) {
		struct op_key k = {.tgid = (uint32_t)getpid(), .conn = i};
		if (bpf_map__update_elem(skel->maps.op_hash, &k, sizeof k, value, sizeof value, BPF_ANY))
			die("cannot fill op_hash: %s", strerror(errno));
	}
	const struct fn push = {"floor_push", "push %rbp", floor_push, floor_push_twin};
	struct {
		const char *name;
		const struct bpf_program *prog;
	} ops[] = {
		{"base", skel->progs.op_base},
		{"hash_lookup", skel->progs.op_lookup},
		{"hash_update_delete", skel->progs.op_update_delete},
		{"ktime_get_ns", skel->progs.op_ktime},
		{"task_storage_get", skel->progs.op_task_storage},
		{"atomic_add", skel->progs.op_atomic_add},
		{"probe_read_user_64", skel->progs.op_read_user},
		{"array_insert_delete", skel->progs.op_array_insert_delete},
	};
	enum { NOPS = sizeof ops / sizeof ops[0] };
	static double added[NOPS][1000];
	for (int r = 0; r < rounds; r++)
		for (int o = 0; o < NOPS; o++) {
			double med, wall, base;
			struct bpf_link *l = attach(ops[o].prog, exe, push.name, 0, 0);
			measure(&push, calls, block, &added[o][r], &med, &wall, &base);
			added[o][r] = med; /* the block median: steadier on a shared machine */
			bpf_link__destroy(l);
		}
	printf("{\"calls\":%ld,\"block\":%ld,\"rounds\":%d,\"ops_per_hit\":%d,\"uprobe_with_base_ns\":[", calls, block,
	       rounds, OPS_PER_HIT);
	for (int r = 0; r < rounds; r++)
		printf("%s%.1f", r ? "," : "", added[0][r]);
	printf("],\"op_ns\":{");
	for (int o = 1; o < NOPS; o++) {
		double per[1000];
		printf("%s\"%s\":[", o > 1 ? "," : "", ops[o].name);
		for (int r = 0; r < rounds; r++) {
			per[r] = (added[o][r] - added[0][r]) / OPS_PER_HIT;
			printf("%s%.1f", r ? "," : "", per[r]);
		}
		printf("]");
	}
	printf("},\"op_ns_median\":{");
	for (int o = 1; o < NOPS; o++) {
		double per[1000];
		for (int r = 0; r < rounds; r++)
			per[r] = (added[o][r] - added[0][r]) / OPS_PER_HIT;
		printf("%s\"%s\":%.1f", o > 1 ? "," : "", ops[o].name, median(per, rounds));
	}
	printf("}}\n");
	uprobe_floor_bpf__destroy(skel);
	return 0;
}

/* ---- attach ---- */

/* connleak's probe set on libpq (userspace/loader/connleak_loader.cpp, sockets_loader.cpp).
 * connleak probes PQfinish past its NULL test where it has one: give
 * PQfinish+OFF explicitly for that (bench.py does). */
static const char *const connleak_probes[] = {
	"PQconnectdb:ret", "PQconnectdbParams:ret", "PQconnectStart:ret", "PQconnectStartParams:ret",
	"PQsetdbLogin:ret", "PQping:ret", "PQpingParams:ret", "PQfinish", "PQreset", "PQresetStart",
	"PQconnectPoll:ret",
};

static int run_attach(int argc, char **argv)
{
	int dash = -1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			dash = i;
			break;
		}
	if (argc < 2 || dash < 2 || dash == argc - 1)
		die("usage: uprobe_floor attach LIBRARY [FUNC[:ret]|FUNC+OFF ...] -- COMMAND [ARGS...]");
	const char *lib = argv[1];
	const char *const *funcs = (const char *const *)&argv[2];
	int nfuncs = dash - 2;
	if (nfuncs == 0) {
		funcs = connleak_probes;
		nfuncs = sizeof connleak_probes / sizeof connleak_probes[0];
	}
	struct uprobe_floor_bpf *skel = load();
	struct bpf_link **links = calloc((size_t)nfuncs * 2, sizeof *links);
	if (!links)
		die("out of memory");
	for (int i = 0; i < nfuncs; i++) {
		char name[256];
		snprintf(name, sizeof name, "%s", funcs[i]);
		char *colon = strchr(name, ':');
		int ret = colon && strcmp(colon, ":ret") == 0;
		if (colon)
			*colon = 0;
		char *plus = strchr(name, '+');
		size_t off = 0;
		if (plus) { /* FUNC+OFF: an entry probe OFF bytes into FUNC */
			*plus = 0;
			off = strtoul(plus + 1, NULL, 0);
			if (ret)
				die("%s: a return probe takes no offset", funcs[i]);
		}
		links[2 * i] = attach(skel->progs.noop_entry, lib, name, 0, off);
		if (ret)
			links[2 * i + 1] = attach(skel->progs.noop_return, lib, name, 1, 0);
	}
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execvp(argv[dash + 1], &argv[dash + 1]);
		fprintf(stderr, "uprobe_floor: cannot run %s: %s\n", argv[dash + 1], strerror(errno));
		_exit(127);
	}
	signal(SIGINT, SIG_IGN); /* the command gets it and ends; then so do we */
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	for (int i = 0; i < 2 * nfuncs; i++)
		bpf_link__destroy(links[i]);
	uprobe_floor_bpf__destroy(skel);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
	libbpf_set_print(quiet_print);
	if (argc >= 2 && strcmp(argv[1], "self") == 0)
		return run_self(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "attach") == 0)
		return run_attach(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "ops") == 0)
		return run_ops(argc - 1, argv + 1);
	fprintf(stderr, "usage: uprobe_floor self [-n CALLS] [-r ROUNDS] [-b BLOCK]\n"
			"       uprobe_floor ops [-n CALLS] [-r ROUNDS] [-b BLOCK]\n"
			"       uprobe_floor attach LIBRARY [FUNC[:ret]|FUNC+OFF ...] -- COMMAND [ARGS...]\n");
	return 2;
}
