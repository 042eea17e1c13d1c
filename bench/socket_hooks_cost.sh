#!/bin/sh
# What connleak's socket hooks cost (sockets.bpf.c):
#   - tp_btf/inet_sock_set_state: every TCP state change of the machine
#   - cgroup connect_unix (root cgroup): every AF_UNIX connect() of the machine
#   - uprobe on PQconnectPoll (entry only): every libpq connect step, in every
#     process mapping the probed libpq
#   - tp_btf/sched_process_exit: every thread exit (fd walk for traced ones)
#
#   bench/socket_hooks_cost.sh [BUILD_DIR]        (as root)
#   env: RUNS (5), N (20000 socket connects per run), NPQ (300 libpq connects
#        per run), NO_PQ=1 to skip the libpq part (it starts a PostgreSQL),
#        ONLY=poll for the PQconnectPoll part alone (STATS_RUNS: how many
#        traced statistics runs, default 1)
#
# Two measures:
#   1. end to end: the workload's own CPU time per operation, statistics off;
#   2. in-kernel run time of each socket program per call, in one more run
#      with kernel.bpf_stats_enabled (bpftool prog show: run_time_ns /
#      run_cnt): the program alone, without the tracepoint dispatch or the
#      uprobe trap around it.
#
# Workloads, timed inside the process by its own CPU time (user + system: a
# busy machine stretches wall time, much less CPU time), so connleak's
# start-up is not counted:
#   tcp  N   loopback TCP connect + accept + close, N times (10 state changes each)
#   unix N   Unix stream connect + accept + close, N times
#   poll N   PQconnectPoll(NULL), N times: the price of the PQconnectPoll
#            probes per call (a libpq TCP connect makes 6 calls, Unix 3);
#            "poll N wait": the same between two lines read on stdin
#   pq   N   PQconnectdb + PQfinish over loopback TCP, N times
# Configurations:
#   none          connleak not running
#   no-sockets    connleak --no-sockets tracing an idle process (the other hooks only)
#   sockets       connleak tracing an idle process: the workload is unrelated
#   traced        connleak -- WORKLOAD: the workload is the traced process
#   traced-nosock connleak --no-sockets -- WORKLOAD
# Prints the median microseconds per operation of RUNS interleaved rounds,
# and the difference to "none".
set -eu

RUNS=${RUNS:-5}
N=${N:-20000}
NPQ=${NPQ:-300}
. "$(dirname "$0")/lib.sh"
bench_init sockbench "${1:-}"

cat > "$work/sockloop.c" <<'EOF'
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* CPU time of this process (user + system, softirq work done on its
 * behalf included): less sensitive than wall time to other load. */
static double now_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	const char *mode = argv[1];
	long n = atol(argv[2]);
	double t0, t1;
	if (strcmp(mode, "poll") == 0) {
		/* PQconnectPoll(NULL) returns at once: what is left is the
		 * probes' price per call. */
		int wait = argc > 3 && strcmp(argv[3], "wait") == 0;
		char line[16];
		if (wait && !fgets(line, sizeof(line), stdin))
			exit(1);
		t0 = now_us();
		for (long i = 0; i < n; i++)
			if (PQconnectPoll(NULL) != PGRES_POLLING_FAILED)
				exit(1);
		t1 = now_us();
		if (wait) {
			printf("%.3f\n", (t1 - t0) / n);
			fflush(stdout);
			while (fgets(line, sizeof(line), stdin))
				;
			return 0;
		}
	} else if (strcmp(mode, "pq") == 0) {
		t0 = now_us();
		for (long i = 0; i < n; i++) {
			PGconn *c = PQconnectdb(argv[3]);
			if (PQstatus(c) != CONNECTION_OK)
				fprintf(stderr, "connect: %s", PQerrorMessage(c)), exit(1);
			PQfinish(c);
		}
		t1 = now_us();
	} else {
		int tcp = strcmp(mode, "tcp") == 0;
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		struct sockaddr *addr = tcp ? (struct sockaddr *)&in : (struct sockaddr *)&un;
		socklen_t len = tcp ? sizeof(in) : sizeof(un);
		int l = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM, 0);
		if (!tcp)
			snprintf(un.sun_path, sizeof(un.sun_path), "%s/loop.sock", argc > 3 ? argv[3] : "/tmp");
		if (!tcp)
			unlink(un.sun_path);
		if (l < 0 || bind(l, addr, len) || listen(l, 128))
			die("listen");
		if (getsockname(l, addr, &len))
			die("getsockname");
		t0 = now_us();
		for (long i = 0; i < n; i++) {
			int c = socket(tcp ? AF_INET : AF_UNIX, SOCK_STREAM, 0);
			if (c < 0 || connect(c, addr, len))
				die("connect");
			int a = accept(l, NULL, NULL);
			if (a < 0)
				die("accept");
			/* The server closes first: its side keeps the TIME_WAIT, so
			 * connects do not slow down as they pile up. */
			close(a);
			close(c);
		}
		t1 = now_us();
		if (!tcp)
			unlink(un.sun_path);
	}
	printf("%.3f\n", (t1 - t0) / n);
	return 0;
}
EOF
cc -O2 -I/usr/include/postgresql -o "$work/sockloop" "$work/sockloop.c" -lpq

# stop_connleak, with the socket programs' in-kernel run time so far
# dumped first (before they go) for prog_costs, with connleak's PID.
stop_connleak_costs() { # MODE
	bpftool prog show -j > "$work/progs.$1.json" 2>/dev/null || true
	echo "$cl_pid" > "$work/progs.$1.pid"
	stop_connleak
}

# MODE CONFIG: "name calls ns/call" of the socket programs, from
# stop_connleak_costs's dump; only our connleak's (others may run on the
# machine, with programs of the same names).
prog_costs() {
	/usr/bin/python3 - "$work/progs.$1.json" "$2" "$(cat "$work/progs.$1.pid" 2>/dev/null)" <<'PY'
import json, os, sys
try:
    progs = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
ours = int(sys.argv[3]) if sys.argv[3:] and sys.argv[3] else None
names = ("tcp_state", "unix_connect", "connect_poll_enter", "thread_exit")
if os.path.basename(sys.argv[1]).startswith("progs.poll"):
    names = ("connect_poll_enter",)
for p in progs:
    name = p.get("name", "")
    if ours and "pids" in p and ours not in [x.get("pid") for x in p["pids"]]:
        continue
    for n in names:
        if n.startswith(name) and p.get("run_cnt"):
            print("  %-5s %-14s %-20s %9d calls %8.0f ns/call" % (sys.argv[1].split(".")[-2], sys.argv[2], n,
                  p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))
PY
}

# stats_traced_poll N: connect_poll_enter's run time per call when the
# caller is traced (the path a traced libpq user pays: the filter, the poll
# mark, the thread's poll record), statistics on for this run only;
# --no-follow puts the probe in sockloop alone, so no other libpq user of
# the machine adds its (untraced, cheaper) calls to the count.
stats_traced_poll() {
	rm -f "$work/go" "$work/poll.traced-stats"
	mkfifo "$work/go"
	# SCHED_FIFO: the statistics count a preempted program's wait as run time.
	chrt -f 20 "$work/sockloop" poll "$1" wait < "$work/go" > "$work/poll.traced-stats" &
	sl_pid=$!
	exec 4> "$work/go"
	start_connleak --no-follow --libpq "$libpq" -p $sl_pid
	sysctl -q -w kernel.bpf_stats_enabled=1
	echo go >&4
	i=0
	until [ -s "$work/poll.traced-stats" ] || [ $i -gt 3000 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	bpftool prog show -j > "$work/progs.poll-traced.json" 2>/dev/null || true
	sysctl -q -w kernel.bpf_stats_enabled=0
	echo "$cl_pid" > "$work/progs.poll-traced.pid"
	stop_connleak
	exec 4>&-
	wait $sl_pid || true
	report poll 0 "$(cat "$work/poll.traced-stats")" "traced (stats)"
	prog_costs poll-traced traced
}

# once CONFIG MODE N [ARG]: us/op of one run of the workload under CONFIG
once() {
	config=$1
	shift
	case $config in
	none) "$work/sockloop" "$@" ;;
	no-sockets | sockets)
		if [ $config = no-sockets ]; then
			start_connleak --no-sockets --libpq "$libpq" -p $idle_pid
		else
			start_connleak --libpq "$libpq" -p $idle_pid
		fi
		"$work/sockloop" "$@"
		stop_connleak_costs "$1"
		;;
	traced) "$connleak" -q --libpq "$libpq" -- "$work/sockloop" "$@" ;;
	traced-nosock) "$connleak" -q --no-sockets --libpq "$libpq" -- "$work/sockloop" "$@" ;;
	esac
}

# measure MODE N [ARG]: RUNS rounds, each running every configuration once
# (interleaved, so a busy moment of the machine hits them all), then the
# median of each configuration against the median of "none".
measure() {
	configs="none no-sockets sockets traced-nosock traced"
	for r in $(seq "$RUNS"); do
		# each round in another order: no configuration always follows the same one
		order=$(echo $configs | tr ' ' '\n' | awk -v r=$r '{ a[NR] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r) % NR + 1] }')
		for config in $order; do
			once $config "$@" >> "$work/$1.$config"
		done
	done
	base=$(median < "$work/$1.none")
	for config in $configs; do
		report "$1" "$base" "$(median < "$work/$1.$config")" $config
	done
	# The programs' own run time, in a run of its own: the statistics add
	# two clock reads per program run, kept out of the figures above.
	sysctl -q -w kernel.bpf_stats_enabled=1
	once sockets "$@" > /dev/null
	sysctl -q -w kernel.bpf_stats_enabled=0
	prog_costs "$1" sockets
}

report() { # MODE BASE VALUE
	awk -v b="$2" -v v="$3" -v m="$1" -v c="$4" \
		'BEGIN { printf "  %-5s %-14s %9.3f us CPU/op   %+8.3f us/op", m, c, v, v - b
		         if (b >= 0.05) printf " (%+.1f%%)", (v - b) / b * 100
		         printf "\n" }'
}

echo "socket hooks cost: median of $RUNS runs; tcp/unix: $N connects per run, pq: $NPQ per run"
echo "kernel $(uname -r), $(nproc) CPUs"
if [ "${ONLY:-}" = poll ]; then # the PQconnectPoll part alone
	measure poll "$((N * 5))"
	for r in $(seq "${STATS_RUNS:-1}"); do
		stats_traced_poll "$((N * 5))"
	done
	exit 0
fi
measure tcp "$N"
measure unix "$N" "$work"
measure poll "$((N * 5))"
stats_traced_poll "$((N * 5))"

if [ "${NO_PQ:-0}" != 1 ]; then
	start_pg
	measure pq "$NPQ" "$ci"
	stop_pg
fi
