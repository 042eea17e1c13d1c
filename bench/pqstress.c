/* pqstress: a libpq load generator for connleak's benchmarks and its
 * exactness test. It needs no PostgreSQL server: by default it connects to a
 * Unix socket directory where no server listens, so every connect fails at
 * once (no server is the bottleneck) and still hands back a PGconn that needs
 * PQfinish, which connleak counts as acquired like any other.
 *
 *   pqstress [-n TOTAL] [-P PROCS] [-t THREADS] [-l LEAK_EVERY] [-g PING_EVERY]
 *            [-a API] [-c CONNINFO] [-W] [-T HOLD_TIMEOUT_S]
 *
 *   -n TOTAL       lifecycles (acquire, then finish or leak) in all, split over
 *                  PROCS x THREADS workers (default 10000)
 *   -P PROCS       worker processes, forked; 1 (default) runs in this process
 *   -t THREADS     threads per worker process (default 1)
 *   -l LEAK_EVERY  every LEAK_EVERY-th lifecycle of a thread is never finished:
 *                  the handle is held until the process exits (default 0: none)
 *   -g PING_EVERY  also one PQping before every PING_EVERY-th lifecycle (not an
 *                  acquisition; libpq opens and finishes a handle of its own)
 *   -a API         start (PQconnectStart, default), startparams, connectdb,
 *                  params, setdblogin, or mix (the five in turn)
 *   -c CONNINFO    default "host=/nonexistent/connleak-bench port=1 user=bench
 *                  dbname=bench connect_timeout=1"
 *   -W             after the work, print the summary and hold every handle
 *                  not finished until SIGUSR1, SIGINT or SIGTERM (or -T seconds,
 *                  default 300), then exit 0; worker processes stay alive too
 *   -S             wait for SIGUSR1 before starting the work (after "ready")
 *   -B COPY        A/B mode, for measuring what probes add per cycle on a
 *                  noisy machine: TOTAL PQconnectStart+PQfinish cycles in
 *                  blocks of -b BLOCK (default 50), alternating between the
 *                  libpq this program is linked with and COPY, a copy of that
 *                  file loaded with dlopen: the same code, but a different
 *                  file, which probes placed on the original do not reach.
 *                  Each block is timed by this thread's CPU time; the blocks
 *                  of a pair run back to back, so the machine's drift cancels.
 *                  Prints one line, role "ab" (below).
 *
 * Output, one line each, on stdout (flushed):
 *   pqstress ready pid=P                 with -S, before waiting
 *   pqstress {"role":"proc","pid":P,"acquired":A,"finished":F,"held":H,
 *             "pings":I,"cycles":C,"elapsed_ns":E,"ns_per_cycle":X,
 *             "cpu_ns":U,"cpu_ns_per_cycle":Y,"api":NAME,
 *             "stacks":[[API,KIND,A,F],...]}
 *                                        (elapsed: wall clock of the loop;
 *                                        cpu: CPU time, user + kernel, of the
 *                                        worker threads' loops, which probe
 *                                        hits add to and other load does not)
 *                                        one per process that did work;
 *                                        stacks: per acquiring stack, the API
 *                                        and the thread (KIND "main": the
 *                                        process's main thread, "thread": the
 *                                        others), acquired and finished
 *   pqstress {"role":"total","pid":P,"procs":N,...same counters...}
 *                                        last, from the first process
 *   pqstress {"role":"ab","pid":P,"block":B,"pairs":K,"probed_cycles":N,
 *             "plain_cycles":N,"probed_cpu_ns_per_cycle":X,"plain_cpu_ns_per_cycle":Y,
 *             "added_cpu_ns_per_cycle":X-Y,"added_cpu_ns_per_cycle_median":M,...}
 *                                        with -B (probed: through the linked
 *                                        libpq; M: median over block pairs)
 * acquired counts every non-NULL PGconn returned to this program (failed
 * connects too), finished its PQfinish calls, held = acquired - finished.
 * Any unexpected result prints "pqstress: error: ..." on stderr and exits 1;
 * bad usage exits 2.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noipa))

enum api { API_START, API_STARTPARAMS, API_CONNECTDB, API_PARAMS, API_SETDBLOGIN, API_COUNT, API_MIX = API_COUNT };

static const char *const api_names[] = {"start", "startparams", "connectdb", "params", "setdblogin", "mix"};

static struct {
	long total, procs, threads, leak_every, ping_every, hold_timeout;
	enum api api;
	const char *conninfo;
	int hold, start_signal;
	const char *ab_copy;
	long ab_block;
} opt = {10000, 1, 1, 0, 0, 300, API_START,
	 "host=/nonexistent/connleak-bench port=1 user=bench dbname=bench connect_timeout=1", 0, 0, NULL, 50};

/* The conninfo split into keywords, for the *Params APIs and PQsetdbLogin. */
#define MAX_KW 32
static const char *g_keys[MAX_KW + 1], *g_vals[MAX_KW + 1];

/* Thread kinds, for counts per acquiring stack: the process's main thread
 * (its stack through main) and the threads it started (through start_thread). */
enum thread_kind { THREAD_MAIN, THREAD_OTHER, THREAD_KINDS };

struct counts {
	uint64_t acquired, finished, held, pings, cycles, elapsed_ns;
	uint64_t cpu_ns; /* CPU time (user + kernel) of the worker threads' loops */
	/* Per acquiring stack: API x thread kind. */
	uint64_t stack_acquired[API_COUNT][THREAD_KINDS], stack_finished[API_COUNT][THREAD_KINDS];
};

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "pqstress: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void usage(const char *msg) __attribute__((noreturn));
static void usage(const char *msg)
{
	fprintf(stderr, "pqstress: %s\nusage: pqstress [-n TOTAL] [-P PROCS] [-t THREADS] [-l LEAK_EVERY] "
			"[-g PING_EVERY] [-a start|startparams|connectdb|params|setdblogin|mix] "
			"[-c CONNINFO] [-W] [-S] [-T HOLD_TIMEOUT_S] [-B LIBPQ_COPY [-b BLOCK]]\n", msg);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long parse_long(const char *s, const char *what, long min)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min) {
		char msg[128];
		snprintf(msg, sizeof msg, "bad %s: %s", what, s);
		usage(msg);
	}
	return v;
}

static void split_conninfo(void)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(opt.conninfo, &err);
	int n = 0;
	if (!opts)
		die("bad conninfo: %s", err ? err : "out of memory");
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && n < MAX_KW) {
			g_keys[n] = strdup(o->keyword);
			g_vals[n] = strdup(o->val);
			n++;
		}
	g_keys[n] = g_vals[n] = NULL;
	PQconninfoFree(opts);
}

static const char *kw(const char *key)
{
	for (int i = 0; g_keys[i]; i++)
		if (strcmp(g_keys[i], key) == 0)
			return g_vals[i];
	return NULL;
}

/* One acquisition through the given API. NOINLINE so each API has a site of
 * its own in connleak's report. */
NOINLINE static PGconn *acquire(enum api a)
{
	switch (a) {
	case API_START:
		return PQconnectStart(opt.conninfo);
	case API_STARTPARAMS:
		return PQconnectStartParams(g_keys, g_vals, 0);
	case API_CONNECTDB:
		return PQconnectdb(opt.conninfo);
	case API_PARAMS:
		return PQconnectdbParams(g_keys, g_vals, 0);
	case API_SETDBLOGIN:
		return PQsetdbLogin(kw("host"), kw("port"), NULL, NULL, kw("dbname"), kw("user"), kw("password"));
	default:
		die("bad api %d", (int)a);
	}
}

struct worker {
	pthread_t tid;
	enum thread_kind kind;
	long n;             /* lifecycles to do */
	struct counts c;
	PGconn **held;      /* never finished */
	size_t nheld;
};

static pthread_barrier_t g_barrier;

NOINLINE static void *worker_main(void *p)
{
	struct worker *w = p;
	size_t cap = opt.leak_every ? (size_t)(w->n / opt.leak_every + 1) : 0;
	w->held = cap ? calloc(cap, sizeof *w->held) : NULL;
	if (cap && !w->held)
		die("out of memory");
	pthread_barrier_wait(&g_barrier);
	uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
	for (long i = 0; i < w->n; i++) {
		if (opt.ping_every && i % opt.ping_every == 0) {
			PQping(opt.conninfo);
			w->c.pings++;
		}
		enum api a = opt.api == API_MIX ? (enum api)(i % API_COUNT) : opt.api;
		PGconn *c = acquire(a);
		if (!c)
			die("%s returned NULL (out of memory)", api_names[a]);
		w->c.acquired++;
		w->c.stack_acquired[a][w->kind]++;
		if (opt.leak_every && i % opt.leak_every == opt.leak_every - 1) {
			w->held[w->nheld++] = c;
			w->c.held++;
		} else {
			PQfinish(c);
			w->c.finished++;
			w->c.stack_finished[a][w->kind]++;
		}
	}
	w->c.elapsed_ns = now_ns() - t0;
	w->c.cpu_ns = thread_cpu_ns() - c0;
	w->c.cycles = (uint64_t)w->n;
	return NULL;
}

/* Runs THREADS workers doing n lifecycles in all in this process. */
static struct counts run_workers(long n)
{
	long t = opt.threads;
	struct worker *ws = calloc((size_t)t, sizeof *ws);
	struct counts sum = {0};
	if (!ws)
		die("out of memory");
	pthread_barrier_init(&g_barrier, NULL, (unsigned)t);
	for (long i = 0; i < t; i++) {
		ws[i].n = n / t + (i < n % t);
		ws[i].kind = i ? THREAD_OTHER : THREAD_MAIN;
	}
	for (long i = 1; i < t; i++) {
		int e = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
		if (e)
			die("pthread_create: %s", strerror(e));
	}
	uint64_t t0 = now_ns();
	worker_main(&ws[0]);
	for (long i = 1; i < t; i++) {
		int e = pthread_join(ws[i].tid, NULL);
		if (e)
			die("pthread_join: %s", strerror(e));
	}
	sum.elapsed_ns = now_ns() - t0;
	for (long i = 0; i < t; i++) {
		sum.acquired += ws[i].c.acquired;
		sum.finished += ws[i].c.finished;
		sum.held += ws[i].c.held;
		sum.pings += ws[i].c.pings;
		sum.cycles += ws[i].c.cycles;
		sum.cpu_ns += ws[i].c.cpu_ns;
		for (int a = 0; a < API_COUNT; a++)
			for (int k = 0; k < THREAD_KINDS; k++) {
				sum.stack_acquired[a][k] += ws[i].c.stack_acquired[a][k];
				sum.stack_finished[a][k] += ws[i].c.stack_finished[a][k];
			}
	}
	if (t == 1) /* the loop alone, without thread start-up */
		sum.elapsed_ns = ws[0].c.elapsed_ns;
	/* ws[i].held stays allocated: the handles are held until exit. */
	return sum;
}

static void print_counts(const char *role, pid_t pid, long procs, const struct counts *c)
{
	char extra[64] = "", stacks[API_COUNT * THREAD_KINDS * 64] = "";
	size_t len = 0;
	if (procs >= 0)
		snprintf(extra, sizeof extra, "\"procs\":%ld,", procs);
	for (int a = 0; a < API_COUNT; a++)
		for (int k = 0; k < THREAD_KINDS; k++)
			if (c->stack_acquired[a][k])
				len += (size_t)snprintf(stacks + len, sizeof stacks - len, "%s[\"%s\",\"%s\",%llu,%llu]",
							len ? "," : "", api_names[a], k == THREAD_MAIN ? "main" : "thread",
							(unsigned long long)c->stack_acquired[a][k],
							(unsigned long long)c->stack_finished[a][k]);
	printf("pqstress {\"role\":\"%s\",\"pid\":%d,%s\"acquired\":%llu,\"finished\":%llu,\"held\":%llu,"
	       "\"pings\":%llu,\"cycles\":%llu,\"elapsed_ns\":%llu,\"ns_per_cycle\":%.1f,\"cpu_ns\":%llu,"
	       "\"cpu_ns_per_cycle\":%.1f,\"api\":\"%s\",\"stacks\":[%s]}\n",
	       role, (int)pid, extra, (unsigned long long)c->acquired, (unsigned long long)c->finished,
	       (unsigned long long)c->held, (unsigned long long)c->pings, (unsigned long long)c->cycles,
	       (unsigned long long)c->elapsed_ns, c->cycles ? (double)c->elapsed_ns / (double)c->cycles : 0.0,
	       (unsigned long long)c->cpu_ns, c->cycles ? (double)c->cpu_ns / (double)c->cycles : 0.0,
	       api_names[opt.api], stacks);
	fflush(stdout);
}

/* Blocks until SIGUSR1/SIGINT/SIGTERM (already blocked) or the timeout. */
static void wait_release(long timeout_s)
{
	sigset_t set;
	struct timespec ts = {timeout_s, 0};
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	while (sigtimedwait(&set, NULL, &ts) < 0 && errno == EINTR) {
	}
}

/* Reads one report; dies if a worker process died before sending its own
 * (the others, waiting for the release, would otherwise wait forever). */
static void read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int r = poll(&pfd, 1, 500);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			int st;
			pid_t pid = waitpid(-1, &st, WNOHANG);
			if (pid > 0)
				die("worker process %d ended before reporting (status 0x%x)", (int)pid, st);
			continue;
		}
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("worker process pipe: %s", n ? strerror(errno) : "closed early");
		p += n;
		len -= (size_t)n;
	}
}

/* ---- A/B mode (-B) ---- */

struct pqlib {
	PGconn *(*connect_start)(const char *);
	void (*finish)(PGconn *);
};

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* One block of cycles through lib; returns its CPU ns, adds its wall ns. */
NOINLINE static uint64_t ab_block(const struct pqlib *lib, long n, uint64_t *wall)
{
	uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
	for (long i = 0; i < n; i++) {
		PGconn *c = lib->connect_start(opt.conninfo);
		if (!c)
			die("PQconnectStart returned NULL (out of memory)");
		lib->finish(c);
	}
	*wall += now_ns() - t0;
	return thread_cpu_ns() - c0;
}

static int run_ab(void)
{
	struct pqlib probed = {PQconnectStart, PQfinish}, plain;
	void *h = dlopen(opt.ab_copy, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		die("dlopen %s: %s", opt.ab_copy, dlerror());
	plain.connect_start = (PGconn * (*)(const char *)) dlsym(h, "PQconnectStart");
	plain.finish = (void (*)(PGconn *))dlsym(h, "PQfinish");
	if (!plain.connect_start || !plain.finish)
		die("%s: no PQconnectStart/PQfinish", opt.ab_copy);
	if ((void *)plain.connect_start == (void *)PQconnectStart)
		die("%s is the libpq already loaded, not a copy", opt.ab_copy);
	long block = opt.ab_block, pairs = opt.total / (2 * block);
	if (pairs < 1)
		die("-n must be at least 2 x the block size");
	int64_t *diff = calloc((size_t)pairs, sizeof *diff);
	if (!diff)
		die("out of memory");
	uint64_t wall[2] = {0, 0}, cpu[2] = {0, 0};
	ab_block(&probed, block, &wall[0]); /* warm up both */
	ab_block(&plain, block, &wall[1]);
	wall[0] = wall[1] = 0;
	for (long k = 0; k < pairs; k++) {
		uint64_t a, b;
		if (k % 2 == 0) {
			a = ab_block(&probed, block, &wall[0]);
			b = ab_block(&plain, block, &wall[1]);
		} else {
			b = ab_block(&plain, block, &wall[1]);
			a = ab_block(&probed, block, &wall[0]);
		}
		cpu[0] += a;
		cpu[1] += b;
		diff[k] = (int64_t)a - (int64_t)b;
	}
	qsort(diff, (size_t)pairs, sizeof *diff, cmp_i64);
	double med = pairs % 2 ? (double)diff[pairs / 2] : ((double)diff[pairs / 2 - 1] + (double)diff[pairs / 2]) / 2;
	double n = (double)(pairs * block);
	printf("pqstress {\"role\":\"ab\",\"pid\":%d,\"block\":%ld,\"pairs\":%ld,\"probed_cycles\":%ld,"
	       "\"plain_cycles\":%ld,\"probed_cpu_ns_per_cycle\":%.1f,\"plain_cpu_ns_per_cycle\":%.1f,"
	       "\"added_cpu_ns_per_cycle\":%.1f,\"added_cpu_ns_per_cycle_median\":%.1f,"
	       "\"probed_wall_ns_per_cycle\":%.1f,\"plain_wall_ns_per_cycle\":%.1f}\n",
	       (int)getpid(), block, pairs, pairs * block + block, pairs * block + block, (double)cpu[0] / n,
	       (double)cpu[1] / n, ((double)cpu[0] - (double)cpu[1]) / n, med / (double)block, (double)wall[0] / n,
	       (double)wall[1] / n);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int ch;
	while ((ch = getopt(argc, argv, "n:P:t:l:g:a:c:WST:B:b:h")) != -1) {
		switch (ch) {
		case 'n': opt.total = parse_long(optarg, "-n", 0); break;
		case 'P': opt.procs = parse_long(optarg, "-P", 1); break;
		case 't': opt.threads = parse_long(optarg, "-t", 1); break;
		case 'l': opt.leak_every = parse_long(optarg, "-l", 0); break;
		case 'g': opt.ping_every = parse_long(optarg, "-g", 0); break;
		case 'c': opt.conninfo = optarg; break;
		case 'W': opt.hold = 1; break;
		case 'S': opt.start_signal = 1; break;
		case 'T': opt.hold_timeout = parse_long(optarg, "-T", 1); break;
		case 'B': opt.ab_copy = optarg; break;
		case 'b': opt.ab_block = parse_long(optarg, "-b", 1); break;
		case 'a': {
			int found = 0;
			for (int i = 0; i <= API_MIX; i++)
				if (strcmp(optarg, api_names[i]) == 0) {
					opt.api = (enum api)i;
					found = 1;
				}
			if (!found)
				usage("bad -a");
			break;
		}
		default: usage("bad option");
		}
	}
	if (optind != argc)
		usage("unexpected argument");
	split_conninfo();

	/* Signals that end a hold are taken by sigtimedwait only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (opt.start_signal) {
		printf("pqstress ready pid=%d\n", (int)getpid());
		fflush(stdout);
		wait_release(opt.hold_timeout);
	}

	if (opt.ab_copy)
		return run_ab();
	if (opt.procs == 1) {
		struct counts c = run_workers(opt.total);
		print_counts("proc", getpid(), -1, &c);
		print_counts("total", getpid(), 1, &c);
		if (opt.hold)
			wait_release(opt.hold_timeout);
		return 0;
	}

	/* Several processes: each reports its counts through a pipe once done,
	 * then waits for the release pipe to close before exiting. */
	int report[2], release[2], go[2];
	if (pipe(report) || pipe(release) || pipe(go))
		die("pipe: %s", strerror(errno));
	pid_t *pids = calloc((size_t)opt.procs, sizeof *pids);
	if (!pids)
		die("out of memory");
	for (long p = 0; p < opt.procs; p++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork: %s", strerror(errno));
		if (pid == 0) {
			close(report[0]);
			close(release[1]);
			close(go[1]);
			char b;
			while (read(go[0], &b, 1) < 0 && errno == EINTR) {
			}
			struct counts c = run_workers(opt.total / opt.procs + (p < opt.total % opt.procs));
			struct {
				pid_t pid;
				struct counts c;
			} msg = {getpid(), c};
			if (write(report[1], &msg, sizeof msg) != (ssize_t)sizeof msg)
				die("report pipe: %s", strerror(errno));
			while (read(release[0], &b, 1) < 0 && errno == EINTR) {
			}
			_exit(0);
		}
		pids[p] = pid;
	}
	close(report[1]);
	close(release[0]);
	close(go[0]);
	uint64_t t0 = now_ns();
	close(go[1]); /* all start at once */
	struct counts sum = {0};
	for (long p = 0; p < opt.procs; p++) {
		struct {
			pid_t pid;
			struct counts c;
		} msg;
		read_full(report[0], &msg, sizeof msg);
		print_counts("proc", msg.pid, -1, &msg.c);
		sum.acquired += msg.c.acquired;
		sum.finished += msg.c.finished;
		sum.held += msg.c.held;
		sum.pings += msg.c.pings;
		sum.cycles += msg.c.cycles;
		sum.cpu_ns += msg.c.cpu_ns;
	}
	sum.elapsed_ns = now_ns() - t0;
	print_counts("total", getpid(), opt.procs, &sum);
	if (opt.hold)
		wait_release(opt.hold_timeout);
	close(release[1]);
	int failed = 0;
	for (long p = 0; p < opt.procs; p++) {
		int st;
		while (waitpid(pids[p], &st, 0) < 0 && errno == EINTR) {
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	if (failed)
		die("a worker process failed");
	return 0;
}
