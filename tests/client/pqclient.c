/* pqclient: a libpq client with one mode per libpq API and per leak pattern,
 * driven by connleak's integration tests and demo.
 *
 *   pqclient MODE CONNINFO [ARGS...]
 *
 * Modes (N connections, LEAK of them never finished: held until exit):
 *   connectdb   CONNINFO N LEAK     PQconnectdb
 *   params      CONNINFO N LEAK     PQconnectdbParams (CONNINFO split into keywords)
 *   start       CONNINFO N LEAK     PQconnectStart + PQconnectPoll loop
 *   startparams CONNINFO N LEAK     PQconnectStartParams + PQconnectPoll loop
 *   setdblogin  CONNINFO N LEAK     PQsetdbLogin(host, port, dbname, user from
 *                                   CONNINFO; application_name via PGAPPNAME)
 *   twosites    CONNINFO N1 N2 [LEAK1 LEAK2]
 *                                   N1 from site_a(), N2 from site_b()
 *   threads     CONNINFO T N LEAK   T threads, each N cycles leaking LEAK
 *   reset       CONNINFO            connect, PQreset x2, PQresetStart+poll, finish
 *   fail        CONNINFO N LEAK     PQconnectdb expected to fail (CONNECTION_BAD)
 *   ping        CONNINFO N          N x PQping, each must answer PQPING_OK
 *   pingparams  CONNINFO N          N x PQpingParams
 *   fork        CONNINFO N LEAK     parent connects+finishes once, then forks a
 *                                   child doing connectdb N LEAK; parent waits
 *   exit        CONNINFO CODE       connect + finish once, then exit with CODE
 *   hold        CONNINFO N LEAK     open N, print "ready pid=P", wait for a line
 *                                   on stdin (or EOF), finish all but LEAK (oldest
 *                                   first), print the summary, wait for a line
 *                                   (or EOF), exit
 *   interactive CONNINFO            print "ready pid=P", then obey stdin commands,
 *                                   one reply line each (starting "ok" or the
 *                                   program exits non-zero):
 *                                     open N        -> ok open held=H conns=0x..,0x..
 *                                     finish-old N  -> ok finish held=H conns=...
 *                                     finish-new N  -> ok finish held=H conns=...
 *                                     finish-all    -> ok finish held=0 conns=...
 *                                     ping N        -> ok ping
 *                                     query-a I     -> query_site_a() runs a query on
 *                                                      held handle I (oldest 0):
 *                                                      ok query backend=PID t0=T t1=T
 *                                                      (CLOCK_MONOTONIC around it)
 *                                     query-b I     -> the same from query_site_b()
 *                                     query-a-many N I
 *                                                   -> query_site_a() N times on held
 *                                                      handle I, autocommit (N units
 *                                                      of work): ok queries=N backend=PID
 *                                     query-sleep I -> the same from query_site_sleep():
 *                                                      select pg_sleep(1.5), its
 *                                                      answer 1.5 s after the send
 *                                     fork N LEAK   -> a child does connectdb N
 *                                                      LEAK and exits; the parent
 *                                                      waits: ok fork child=PID
 *                                     summary       -> the summary line
 *                                     exit / EOF    -> summary line, exit 0
 *                                                      (held handles leak)
 *   churn       CONNINFO SECONDS PERIOD_MS LEAK_EVERY
 *                                   for SECONDS, one request every PERIOD_MS:
 *                                   every LEAK_EVERY-th from leaky_handler()
 *                                   (never finished), others from
 *                                   good_handler() (finished)
 *
 * At the end every mode prints one machine-readable line on stdout:
 *   pqclient: mode=M pid=P acquired=A finished=F held=H bad=B pings=I resets=R
 * acquired counts every PGconn returned by libpq (failed ones too), finished
 * counts PQfinish calls, held = acquired - finished (leaked at exit).
 * Any unexpected libpq result prints "pqclient: error: ..." on stderr and
 * exits 1; bad usage exits 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noipa))

static const char *g_mode = "?";
static long g_acquired, g_finished, g_bad, g_pings, g_resets;

/* Handles not finished yet, oldest first. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static PGconn **g_held;
static size_t g_nheld, g_capheld;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	/* libpq messages end with a newline: keep the diagnostic on one line. */
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fflush(stdout);
	fprintf(stderr, "pqclient: error: %s\n", buf);
	exit(1);
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
	fprintf(stderr, "usage: pqclient MODE CONNINFO [ARGS...] (see the header of pqclient.c)\n");
	exit(2);
}

static long arg_long(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0) {
		fprintf(stderr, "pqclient: bad %s: '%s'\n", what, s);
		exit(2);
	}
	return v;
}

static void count(long *c, long n)
{
	__atomic_add_fetch(c, n, __ATOMIC_SEQ_CST);
}

static long get(long *c)
{
	return __atomic_load_n(c, __ATOMIC_SEQ_CST);
}

static void summary(void)
{
	long a = get(&g_acquired), f = get(&g_finished);
	printf("pqclient: mode=%s pid=%d acquired=%ld finished=%ld held=%ld bad=%ld pings=%ld resets=%ld\n",
	       g_mode, (int)getpid(), a, f, a - f, get(&g_bad), get(&g_pings), get(&g_resets));
	fflush(stdout);
}

/* Every PGconn libpq hands out goes through here. */
static PGconn *acquired(PGconn *c, const char *api)
{
	if (!c)
		die("%s returned NULL (out of memory)", api);
	count(&g_acquired, 1);
	return c;
}

static void expect_ok(PGconn *c, const char *api)
{
	if (PQstatus(c) != CONNECTION_OK)
		die("%s: connection failed: %s", api, PQerrorMessage(c));
}

static void finish(PGconn *c)
{
	PQfinish(c);
	count(&g_finished, 1);
}

static void hold(PGconn *c)
{
	pthread_mutex_lock(&g_lock);
	if (g_nheld == g_capheld) {
		g_capheld = g_capheld ? 2 * g_capheld : 64;
		g_held = realloc(g_held, g_capheld * sizeof *g_held);
		if (!g_held)
			die("out of memory");
	}
	g_held[g_nheld++] = c;
	pthread_mutex_unlock(&g_lock);
}

/* Finish N held handles, the oldest (or newest) first. */
static void finish_held(size_t n, int newest)
{
	pthread_mutex_lock(&g_lock);
	if (n > g_nheld)
		die("cannot finish %zu handles, only %zu held", n, g_nheld);
	for (size_t i = 0; i < n; i++) {
		PGconn *c;
		if (newest) {
			c = g_held[--g_nheld];
		} else {
			c = g_held[0];
			memmove(g_held, g_held + 1, (g_nheld - 1) * sizeof *g_held);
			g_nheld--;
		}
		finish(c);
	}
	pthread_mutex_unlock(&g_lock);
}

static void print_held(void)
{
	pthread_mutex_lock(&g_lock);
	printf(" held=%zu conns=", g_nheld);
	for (size_t i = 0; i < g_nheld; i++)
		printf("%s%p", i ? "," : "", (void *)g_held[i]);
	pthread_mutex_unlock(&g_lock);
	printf("\n");
	fflush(stdout);
}

/* The i-th of n connections: finished unless it is one of the last `leak`. */
static void finish_or_hold(PGconn *c, long i, long n, long leak)
{
	if (i < n - leak)
		finish(c);
	else
		hold(c);
}

/* Waits for the socket as the last poll status asks; returns when done. */
static void poll_loop(PGconn *c, PostgresPollingStatusType (*pollfn)(PGconn *), const char *api)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	for (;;) {
		if (st == PGRES_POLLING_OK)
			return;
		if (st == PGRES_POLLING_FAILED)
			die("%s: polling failed: %s", api, PQerrorMessage(c));
		struct pollfd p = {.fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
		if (p.fd < 0)
			die("%s: no socket: %s", api, PQerrorMessage(c));
		int r = poll(&p, 1, 60000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("%s: poll: %s", api, strerror(errno));
		if (r == 0)
			die("%s: timed out waiting for the server", api);
		st = pollfn(c);
	}
}

/* CONNINFO split into keyword/value arrays, for the *Params APIs. */
static const char **g_keys, **g_vals;

static void split_conninfo(const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (!opts)
		die("cannot parse conninfo: %s", err ? err : "out of memory");
	size_t n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		n++;
	g_keys = calloc(n + 1, sizeof *g_keys);
	g_vals = calloc(n + 1, sizeof *g_vals);
	if (!g_keys || !g_vals)
		die("out of memory");
	size_t k = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (o->val && *o->val) {
			g_keys[k] = strdup(o->keyword);
			g_vals[k] = strdup(o->val);
			k++;
		}
	}
	PQconninfoFree(opts);
}

static const char *conninfo_value(const char *key)
{
	for (size_t i = 0; g_keys[i]; i++)
		if (strcmp(g_keys[i], key) == 0)
			return g_vals[i];
	return NULL;
}

/* ---- one function per API, so each has its own call site ---- */

NOINLINE static void run_connectdb(const char *ci, long n, long leak)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
		expect_ok(c, "PQconnectdb");
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void run_params(long n, long leak)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdbParams(g_keys, g_vals, 0), "PQconnectdbParams");
		expect_ok(c, "PQconnectdbParams");
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void run_start(const char *ci, long n, long leak)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectStart(ci), "PQconnectStart");
		if (PQstatus(c) == CONNECTION_BAD)
			die("PQconnectStart: %s", PQerrorMessage(c));
		poll_loop(c, PQconnectPoll, "PQconnectPoll");
		expect_ok(c, "PQconnectStart");
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void run_startparams(long n, long leak)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectStartParams(g_keys, g_vals, 0), "PQconnectStartParams");
		if (PQstatus(c) == CONNECTION_BAD)
			die("PQconnectStartParams: %s", PQerrorMessage(c));
		poll_loop(c, PQconnectPoll, "PQconnectPoll");
		expect_ok(c, "PQconnectStartParams");
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void run_setdblogin(long n, long leak)
{
	const char *host = conninfo_value("host");
	const char *port = conninfo_value("port");
	const char *db = conninfo_value("dbname");
	const char *user = conninfo_value("user");
	const char *app = conninfo_value("application_name");
	if (app && setenv("PGAPPNAME", app, 1) != 0)
		die("setenv: %s", strerror(errno));
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQsetdbLogin(host, port, NULL, NULL, db, user, NULL), "PQsetdbLogin");
		expect_ok(c, "PQsetdbLogin");
		finish_or_hold(c, i, n, leak);
	}
}

/* Two call sites: different bodies, never inlined, cloned or merged. */
static volatile int g_site_marker;

NOINLINE static void site_a(const char *ci, long n, long leak)
{
	g_site_marker = 'a';
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
		expect_ok(c, "site_a");
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void site_b(const char *ci, long n, long leak)
{
	g_site_marker = 'b';
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
		expect_ok(c, "site_b");
		finish_or_hold(c, i, n, leak);
	}
	g_site_marker = 0;
}

struct thread_arg {
	const char *ci;
	long n, leak;
};

NOINLINE static void *thread_body(void *p)
{
	struct thread_arg *a = p;
	for (long i = 0; i < a->n; i++) {
		PGconn *c = acquired(PQconnectdb(a->ci), "PQconnectdb");
		expect_ok(c, "thread PQconnectdb");
		finish_or_hold(c, i, a->n, a->leak);
	}
	return NULL;
}

NOINLINE static void run_threads(const char *ci, long t, long n, long leak)
{
	pthread_t *tids = calloc(t ? t : 1, sizeof *tids);
	struct thread_arg arg = {ci, n, leak};
	if (!tids)
		die("out of memory");
	for (long i = 0; i < t; i++) {
		int e = pthread_create(&tids[i], NULL, thread_body, &arg);
		if (e)
			die("pthread_create: %s", strerror(e));
	}
	for (long i = 0; i < t; i++) {
		int e = pthread_join(tids[i], NULL);
		if (e)
			die("pthread_join: %s", strerror(e));
	}
	free(tids);
}

NOINLINE static void run_reset(const char *ci)
{
	PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
	expect_ok(c, "PQconnectdb");
	for (int i = 0; i < 2; i++) {
		PQreset(c);
		count(&g_resets, 1);
		expect_ok(c, "PQreset");
	}
	if (!PQresetStart(c))
		die("PQresetStart: %s", PQerrorMessage(c));
	count(&g_resets, 1);
	poll_loop(c, PQresetPoll, "PQresetPoll");
	expect_ok(c, "PQresetStart");
	finish(c);
}

NOINLINE static void run_fail(const char *ci, long n, long leak)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
		if (PQstatus(c) != CONNECTION_BAD)
			die("PQconnectdb was expected to fail but connected");
		count(&g_bad, 1);
		finish_or_hold(c, i, n, leak);
	}
}

NOINLINE static void run_ping(const char *ci, long n, int params)
{
	for (long i = 0; i < n; i++) {
		PGPing r = params ? PQpingParams(g_keys, g_vals, 0) : PQping(ci);
		count(&g_pings, 1);
		if (r != PQPING_OK)
			die("%s returned %d, expected PQPING_OK", params ? "PQpingParams" : "PQping", (int)r);
	}
}

/* Reads one line from stdin; returns 0 at EOF. */
static int read_line(char *buf, size_t size)
{
	if (!fgets(buf, (int)size, stdin))
		return 0;
	buf[strcspn(buf, "\r\n")] = 0;
	return 1;
}

NOINLINE static void interactive_open(const char *ci, long n)
{
	for (long i = 0; i < n; i++) {
		PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
		expect_ok(c, "PQconnectdb");
		hold(c);
	}
}

/* Forks a child that opens n connections, leaks `leak` of them and exits
 * (without touching the parent's handles); returns the child's pid. */
static pid_t fork_child(const char *ci, long n, long leak)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		g_mode = "fork-child";
		g_acquired = g_finished = g_bad = g_pings = g_resets = 0;
		g_nheld = 0; /* the parent's handles are not the child's business */
		run_connectdb(ci, n, leak);
		summary();
		exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("child %d failed (status 0x%x)", (int)pid, status);
	return pid;
}

static void run_fork(const char *ci, long n, long leak)
{
	PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
	expect_ok(c, "PQconnectdb");
	finish(c);
	fork_child(ci, n, leak);
}

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void expect_tuples(PGresult *r, PGconn *c)
{
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("query: %s", PQerrorMessage(c));
	PQclear(r);
}

/* Two users of one handle, for last-user tests (test_last_user.py). */
NOINLINE static void query_site_a(PGconn *c)
{
	expect_tuples(PQexec(c, "select 'a'"), c); /* MARK:query_a */
}

NOINLINE static void query_site_b(PGconn *c)
{
	expect_tuples(PQexec(c, "select 'b'"), c); /* MARK:query_b */
}

NOINLINE static void query_site_sleep(PGconn *c)
{
	expect_tuples(PQexec(c, "select pg_sleep(1.5)"), c); /* MARK:query_sleep */
}

static void interactive_query(long i, void (*user)(PGconn *))
{
	if ((size_t)i >= g_nheld)
		die("query: no held handle %ld", i);
	double t0 = monotonic_s();
	user(g_held[i]);
	double t1 = monotonic_s();
	printf("ok query backend=%d t0=%.6f t1=%.6f\n", PQbackendPID(g_held[i]), t0, t1);
	fflush(stdout);
}

static void run_interactive(const char *ci)
{
	char line[256];
	printf("ready pid=%d\n", (int)getpid());
	fflush(stdout);
	while (read_line(line, sizeof line)) {
		char cmd[64];
		long n = 0, m = 0;
		int k = sscanf(line, "%63s %ld %ld", cmd, &n, &m);
		if (k < 1)
			continue;
		if ((k >= 2 && n < 0) || (k == 3 && (m < 0 || m > n)))
			die("bad count in '%s'", line);
		if (strcmp(cmd, "open") == 0 && k == 2) {
			interactive_open(ci, n);
			printf("ok open");
			print_held();
		} else if (strcmp(cmd, "finish-old") == 0 && k == 2) {
			finish_held((size_t)n, 0);
			printf("ok finish");
			print_held();
		} else if (strcmp(cmd, "finish-new") == 0 && k == 2) {
			finish_held((size_t)n, 1);
			printf("ok finish");
			print_held();
		} else if (strcmp(cmd, "finish-all") == 0) {
			finish_held(g_nheld, 0);
			printf("ok finish");
			print_held();
		} else if (strcmp(cmd, "query-a") == 0 && k == 2) {
			interactive_query(n, query_site_a);
		} else if (strcmp(cmd, "query-a-many") == 0 && k == 3) {
			if ((size_t)m >= g_nheld)
				die("query: no held handle %ld", m);
			for (long q = 0; q < n; q++)
				query_site_a(g_held[m]);
			printf("ok queries=%ld backend=%d\n", n, PQbackendPID(g_held[m]));
			fflush(stdout);
		} else if (strcmp(cmd, "query-b") == 0 && k == 2) {
			interactive_query(n, query_site_b);
		} else if (strcmp(cmd, "query-sleep") == 0 && k == 2) {
			interactive_query(n, query_site_sleep);
		} else if (strcmp(cmd, "ping") == 0 && k == 2) {
			run_ping(ci, n, 0);
			printf("ok ping\n");
			fflush(stdout);
		} else if (strcmp(cmd, "fork") == 0 && k == 3) {
			pid_t child = fork_child(ci, n, m);
			printf("ok fork child=%d\n", (int)child);
			fflush(stdout);
		} else if (strcmp(cmd, "summary") == 0) {
			summary();
		} else if (strcmp(cmd, "exit") == 0) {
			break;
		} else {
			die("unknown command '%s'", line);
		}
	}
}

static void run_hold(const char *ci, long n, long leak)
{
	char line[256];
	interactive_open(ci, n);
	printf("ready pid=%d\n", (int)getpid());
	fflush(stdout);
	read_line(line, sizeof line);
	finish_held((size_t)(n - leak), 0);
	summary();
	read_line(line, sizeof line);
}

NOINLINE static void good_handler(const char *ci)
{
	PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
	expect_ok(c, "good_handler");
	PGresult *r = PQexec(c, "SELECT 1");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("SELECT 1: %s", PQerrorMessage(c));
	PQclear(r);
	finish(c);
}

NOINLINE static void leaky_handler(const char *ci)
{
	PGconn *c = acquired(PQconnectdb(ci), "PQconnectdb");
	expect_ok(c, "leaky_handler");
	PGresult *r = PQexec(c, "SELECT 1");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		die("SELECT 1: %s", PQerrorMessage(c));
	PQclear(r);
	hold(c); /* forgot PQfinish */
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_churn(const char *ci, long seconds, long period_ms, long leak_every)
{
	double end = now_s() + seconds;
	printf("ready pid=%d\n", (int)getpid());
	fflush(stdout);
	for (long i = 0; now_s() < end; i++) {
		if (leak_every > 0 && i % leak_every == leak_every - 1)
			leaky_handler(ci);
		else
			good_handler(ci);
		struct timespec ts = {period_ms / 1000, (period_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc < 3)
		usage();
	const char *mode = argv[1], *ci = argv[2];
	char **a = argv + 3;
	int na = argc - 3;
	int code = 0;
	g_mode = mode;
	split_conninfo(ci);

#define NARGS(lo, hi) \
	do { \
		if (na < (lo) || na > (hi)) \
			usage(); \
	} while (0)
#define ARG(i, what) arg_long(a[i], what)

	int is_n_leak = strcmp(mode, "connectdb") == 0 || strcmp(mode, "params") == 0 ||
			strcmp(mode, "start") == 0 || strcmp(mode, "startparams") == 0 ||
			strcmp(mode, "setdblogin") == 0 || strcmp(mode, "fail") == 0 ||
			strcmp(mode, "fork") == 0 || strcmp(mode, "hold") == 0;
	long n = 0, leak = 0;
	if (is_n_leak) {
		NARGS(2, 2);
		n = ARG(0, "N");
		leak = ARG(1, "LEAK");
		if (leak > n) {
			fprintf(stderr, "pqclient: LEAK (%ld) > N (%ld)\n", leak, n);
			exit(2);
		}
	}

	if (strcmp(mode, "connectdb") == 0) {
		run_connectdb(ci, n, leak);
	} else if (strcmp(mode, "params") == 0) {
		run_params(n, leak);
	} else if (strcmp(mode, "start") == 0) {
		run_start(ci, n, leak);
	} else if (strcmp(mode, "startparams") == 0) {
		run_startparams(n, leak);
	} else if (strcmp(mode, "setdblogin") == 0) {
		run_setdblogin(n, leak);
	} else if (strcmp(mode, "fail") == 0) {
		run_fail(ci, n, leak);
	} else if (strcmp(mode, "fork") == 0) {
		run_fork(ci, n, leak);
	} else if (strcmp(mode, "hold") == 0) {
		run_hold(ci, n, leak);
		return 0; /* summary already printed */
	} else if (strcmp(mode, "twosites") == 0) {
		if (na != 2 && na != 4)
			usage();
		long n1 = ARG(0, "N1"), n2 = ARG(1, "N2");
		long l1 = na == 4 ? ARG(2, "LEAK1") : 0, l2 = na == 4 ? ARG(3, "LEAK2") : 0;
		if (l1 > n1 || l2 > n2)
			usage();
		site_a(ci, n1, l1);
		site_b(ci, n2, l2);
	} else if (strcmp(mode, "threads") == 0) {
		NARGS(3, 3);
		long t = ARG(0, "T");
		n = ARG(1, "N");
		leak = ARG(2, "LEAK");
		if (leak > n)
			usage();
		run_threads(ci, t, n, leak);
	} else if (strcmp(mode, "reset") == 0) {
		NARGS(0, 0);
		run_reset(ci);
	} else if (strcmp(mode, "ping") == 0 || strcmp(mode, "pingparams") == 0) {
		NARGS(1, 1);
		run_ping(ci, ARG(0, "N"), strcmp(mode, "pingparams") == 0);
	} else if (strcmp(mode, "exit") == 0) {
		NARGS(1, 1);
		code = (int)ARG(0, "CODE");
		run_connectdb(ci, 1, 0);
	} else if (strcmp(mode, "interactive") == 0) {
		NARGS(0, 0);
		run_interactive(ci);
	} else if (strcmp(mode, "churn") == 0) {
		NARGS(3, 3);
		run_churn(ci, ARG(0, "SECONDS"), ARG(1, "PERIOD_MS"), ARG(2, "LEAK_EVERY"));
	} else {
		usage();
	}
	summary();
	return code;
}
