#!/bin/sh
# What connleak's traffic hooks cost (bpf/sock_io.bpf.h):
#   tp_btf/sock_send_length and tp_btf/sock_recv_length fire after every
#   send and receive on every socket of the machine. A socket libpq did not
#   connect in a traced process leaves at one pointer test (its sk_storage
#   mark); a libpq socket's entry gets the time; the first send of a unit of
#   work while the handle is idle sends its stack (a capture).
#
#   bench/socket_io_cost.sh [BUILD_DIR]        (as root)
#   env: RUNS (5), N (200000 send+recv per run), NPQ (5000 queries per run),
#        NO_PQ=1 to skip the libpq part (it starts a PostgreSQL),
#        CONFIGS ("none nohooks floor bystander traced"; none first, nohooks before bystander),
#        AB_PAIRS (100), AB_BLOCK (5000 echoes), AB_REPEAT (3) for the A/B
#        stage, NO_AB=1 to skip it, AB_ONLY=1 for it alone; NO_OPS=1 skips
#        the sock_ops stage (TCP's path since issue 13), OPS_ONLY=1 runs it alone;
#        PGB_ONLY=1 runs the pgbench stage alone, NO_PGB=1 skips it (below: PGB_BUILDS, a list of
#        build directories to compare, PGB_SECONDS, PGB_ROUNDS)
#
# First, the bystander cost in one process, precisely: tp_floor ab runs the
# echo below in blocks with the hooks attached and detached in turn (ABBA),
# connleak's own sock_send/sock_recv and then empty programs, and prints
# each pair's ratio (median, quartiles, extremes).
#
# Workloads, timed by their own CPU time (user + system) per operation:
#   echo N        64 bytes sent on one end of a loopback TCP connection and
#                 received on the other: one send and one receive per op
#   pqauto N CI   PQexec("select 1") N times, autocommit: every query begins
#                 a unit of work on an idle handle (a capture each, when traced)
#   pqxact N CI   BEGIN, N x PQexec("select 1"), COMMIT: in a transaction,
#                 no capture (the send hook's cheap path)
# Configurations, side by side in each round (each round in another order):
#   none       connleak not running
#   nohooks    connleak --no-sockets tracing another (idle) process: connleak
#              runs, the traffic hooks are not attached
#   floor      build/bench/tp_floor: empty programs on the same two
#              tracepoints, no connleak: the kernel's dispatch alone
#   bystander  connleak tracing another (idle) process: the hooks are
#              attached, the workload is not traced
#   traced     connleak -- WORKLOAD
# Prints the median us/op of RUNS interleaved rounds and the ratio of the
# medians to "none"; then the ratio of each round's own pair (bystander over
# nohooks: the hooks alone; bystander over none: connleak as a whole), as
# median [min, quartiles, max] over the rounds, so the spread shows what
# the machine's noise allows; then, in one more run with
# kernel.bpf_stats_enabled, the hooks' own in-kernel ns per call (bpftool:
# run_time_ns / run_cnt).
set -eu

RUNS=${RUNS:-5}
AB_PAIRS=${AB_PAIRS:-100}
AB_BLOCK=${AB_BLOCK:-5000}
AB_REPEAT=${AB_REPEAT:-3}
N=${N:-200000}
NPQ=${NPQ:-5000}
. "$(dirname "$0")/lib.sh"
bench_init iobench "${1:-}"
[ -x "$build/bench/tp_floor" ] || { echo "no $build/bench/tp_floor: build first" >&2; exit 1; }

cat > "$work/ioloop.c" <<'EOF'
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static double now_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static void query(PGconn *c, const char *sql, ExecStatusType want)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != want)
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(c)), exit(1);
	PQclear(r);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	double t0, t1;
	if (strcmp(argv[1], "echo") == 0) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(in);
		int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), a;
		char buf[64] = { 0 };
		if (l < 0 || c < 0 || bind(l, (void *)&in, len) || listen(l, 1) || getsockname(l, (void *)&in, &len) ||
		    connect(c, (void *)&in, len) || (a = accept(l, NULL, NULL)) < 0)
			perror("setup"), exit(1);
		t0 = now_us();
		for (long i = 0; i < n; i++)
			if (send(c, buf, sizeof(buf), 0) != sizeof(buf) || recv(a, buf, sizeof(buf), MSG_WAITALL) != sizeof(buf))
				perror("echo"), exit(1);
		t1 = now_us();
	} else if (strcmp(argv[1], "connect") == 0) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(in);
		int l = socket(AF_INET, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (void *)&in, len) || listen(l, 64) || getsockname(l, (void *)&in, &len))
			perror("setup"), exit(1);
		t0 = now_us();
		for (long i = 0; i < n; i++) {
			int c = socket(AF_INET, SOCK_STREAM, 0), a;
			if (c < 0 || connect(c, (void *)&in, len) || (a = accept(l, NULL, NULL)) < 0)
				perror("connect"), exit(1);
			close(a);
			close(c);
		}
		t1 = now_us();
	} else {
		PGconn *c = PQconnectdb(argv[3]);
		int xact = strcmp(argv[1], "pqxact") == 0;
		if (PQstatus(c) != CONNECTION_OK)
			fprintf(stderr, "connect: %s", PQerrorMessage(c)), exit(1);
		t0 = now_us();
		if (xact)
			query(c, "begin", PGRES_COMMAND_OK);
		for (long i = 0; i < n; i++)
			query(c, "select 1", PGRES_TUPLES_OK);
		if (xact)
			query(c, "commit", PGRES_COMMAND_OK);
		t1 = now_us();
		PQfinish(c);
	}
	printf("%.3f\n", (t1 - t0) / n);
	return 0;
}
EOF
cc -O2 -I/usr/include/postgresql -o "$work/ioloop" "$work/ioloop.c" -lpq

# connleak tracing the idle process: the workload is a bystander.
start_bystander() { # [connleak options]
	start_connleak --libpq "$libpq" "$@" -p $idle_pid
}

# once CONFIG MODE N [ARG]: us/op of one run under CONFIG
once() {
	config=$1
	shift
	case $config in
	none) "$work/ioloop" "$@" ;;
	floor) "$build/bench/tp_floor" -- "$work/ioloop" "$@" ;;
	nohooks)
		start_bystander --no-sockets
		"$work/ioloop" "$@"
		stop_connleak
		;;
	bystander)
		start_bystander
		"$work/ioloop" "$@"
		stop_connleak
		;;
	traced) "$connleak" -q -i 0.5 --libpq "$libpq" -- "$work/ioloop" "$@" ;;
	esac
}

report() { # MODE CONFIG BASE VALUE
	awk -v m="$1" -v c="$2" -v b="$3" -v v="$4" \
		'BEGIN { printf "  %-7s %-10s %9.3f us CPU/op   %+8.3f us/op  ratio %.3f\n", m, c, v, v - b, v / b }'
}

# The hooks' in-kernel ns per call while MODE runs under CONFIG.
prog_costs() { # CONFIG MODE N [ARG]
	config=$1
	shift
	sysctl -q -w kernel.bpf_stats_enabled=1
	if [ "$config" = floor ]; then
		# read the counters before tp_floor detaches at the workload's end
		"$build/bench/tp_floor" -- sh -c '"$0" "$@" > /dev/null; bpftool prog show -j > "'"$work/progs.json"'" 2>/dev/null' \
			"$work/ioloop" "$@" || true
	elif [ "$config" = bystander ]; then
		start_bystander
		"$work/ioloop" "$@" > /dev/null
		bpftool prog show -j > "$work/progs.json" 2>/dev/null || true
		stop_connleak
	else
		"$connleak" -q -i 0.5 --libpq "$libpq" -- "$work/ioloop" "$@" > /dev/null &
		cl_pid=$!
		# read the counters while the workload still runs (the programs go with connleak)
		sleep 0.5
		while kill -0 $cl_pid 2>/dev/null; do
			bpftool prog show -j > "$work/progs.json.tmp" 2>/dev/null && mv "$work/progs.json.tmp" "$work/progs.json"
			sleep 0.2
		done
		wait $cl_pid || true
		cl_pid=
	fi
	sysctl -q -w kernel.bpf_stats_enabled=0
	/usr/bin/python3 - "$work/progs.json" "$1" "$config" <<'PY'
import json, sys
try:
    progs = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
for p in progs:
    if p.get("name") in ("sock_send", "sock_recv", "sock_ops_io", "floor_send", "floor_recv") and p.get("run_cnt"):
        print("  %-7s %-10s %-10s %10d calls %6.0f ns/call (in the program)" % (
            sys.argv[2], sys.argv[3], p["name"], p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))
PY
}

# Each round's ratio A/B (the rounds' values of A and B, in order), as
# "median M [min, q1, q3, max] over R rounds".
pair_ratios() { # MODE A B
	paste "$work/$1.$2" "$work/$1.$3" | awk '{ print $1 / $2 }' | sort -n |
		awk -v m="$1" -v a="$2" -v b="$3" '{ v[NR] = $1 }
		END {
		      printf "  %-7s %-9s / %-9s per round: median %.3f [min %.3f, q1 %.3f, q3 %.3f, max %.3f] over %d rounds\n",
		             m, a, b, v[int((NR + 1) / 2)], v[1], v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)], v[NR], NR }'
}

measure() { # MODE N [ARG]
	configs="${CONFIGS:-none nohooks floor bystander traced}"
	for r in $(seq "$RUNS"); do
		order=$(echo $configs | tr ' ' '\n' | awk -v r=$r '{ a[NR] = $0 } END { for (i = 0; i < NR; i++) print a[(i + r) % NR + 1] }')
		for config in $order; do
			once $config "$@" >> "$work/$1.$config"
		done
	done
	base=$(median < "$work/$1.none")
	for config in $configs; do
		report "$1" $config "$base" "$(median < "$work/$1.$config")"
	done
	case " $configs " in *" nohooks "*" bystander "*) pair_ratios "$1" bystander nohooks ;; esac
	case " $configs " in *" bystander "*) pair_ratios "$1" bystander none ;; esac
	case " $configs " in *" floor "*) pair_ratios "$1" floor none ;; esac
	case " $configs " in *" floor "*) prog_costs floor "$@" ;; esac
	prog_costs bystander "$@"
	case " $configs " in *" traced "*) prog_costs traced "$@" ;; esac
}

# "SEND_ID,RECV_ID": the sock_send and sock_recv programs process PID loaded
# (from its file descriptors' fdinfo).
prog_ids() { # PID
	for f in /proc/$1/fdinfo/*; do sed -n 's/^prog_id:[[:space:]]*//p' "$f" 2>/dev/null; done | sort -u |
		while read -r id; do
			echo "$(bpftool prog show id "$id" -j 2>/dev/null |
				/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin).get("name", ""))') $id"
		done | awk '$1 == "sock_send" { s = $2 } $1 == "sock_recv" { r = $2 } END { if (s && r) print s "," r }'
}

# The hooks attached vs not in neighbouring blocks of one process's echo
# loop (tp_floor ab: ABBA), so a busy machine hits both alike: connleak's own
# programs (loaded by a connleak --no-sockets, which does not attach them),
# then the empty programs of tp_floor (what any program there costs),
# AB_REPEAT times in turn.
ab_stage() {
	echo "  A/B in one process: $AB_PAIRS pairs of blocks of $AB_BLOCK echoes, hooks attached vs not (tp_floor ab)"
	start_bystander --no-sockets
	ids=$(prog_ids $cl_pid)
	[ -n "$ids" ] || { echo "no sock_send/sock_recv loaded by connleak" >&2; exit 1; }
	for r in $(seq "$AB_REPEAT"); do
		printf '  connleak %s ' "$r"
		"$build/bench/tp_floor" ab -n "$AB_PAIRS" -b "$AB_BLOCK" -p "$ids"
		printf '  empty    %s ' "$r"
		"$build/bench/tp_floor" ab -n "$AB_PAIRS" -b "$AB_BLOCK"
	done
	stop_connleak
}

# The id of the program named $2 that process $1 loaded.
prog_id_named() { # PID NAME
	for f in /proc/$1/fdinfo/*; do sed -n 's/^prog_id:[[:space:]]*//p' "$f" 2>/dev/null; done | sort -u |
		while read -r id; do
			bpftool prog show id "$id" -j 2>/dev/null |
				/usr/bin/python3 -c 'import json, sys; p = json.load(sys.stdin); print(p["id"]) if p.get("name") == sys.argv[1] else None' "$2"
		done | head -1
}
run_cnt() { # PROG_ID
	bpftool prog show id "$1" -j | /usr/bin/python3 -c 'import json, sys; p = json.load(sys.stdin); print(p.get("run_cnt", 0), p.get("run_time_ns", 0))'
}
# TCP goes through sock_ops now (bpf/sock_io.bpf.h): connleak attaches
# sock_ops_io to the cgroup v2 directories of the processes it traces (the
# root with --all) and the tracepoints only while a libpq Unix socket needs
# them. What a process connleak does not trace pays for it: the program
# attached vs not in neighbouring blocks of one process (tp_floor ab -o: the
# program a connleak --no-sockets loaded, by id), for echoes (per send: one
# flag test, no program run) and for TCP connects (the connect callbacks run
# the program), attached to the root (what --all costs, and what a bystander
# in a traced process's own cgroup pays) and to a sibling cgroup (a
# bystander in another service's cgroup); then the program's own runs and
# time per bystander echo and per connect (bpf_stats, connleak's own link),
# with the traced idle process in this script's cgroup and in a sibling.
ops_sib=
ops_idle=
ops_cleanup() {
	[ -n "$ops_idle" ] && kill "$ops_idle" 2>/dev/null && wait "$ops_idle" 2>/dev/null || true
	ops_idle=
	[ -n "$ops_sib" ] && rmdir "$ops_sib" 2>/dev/null || true
	ops_sib=
}
# bpf_stats of the sock_ops program of a connleak tracing PID, as the bench's
# own echoes and connects see it.
ops_stats() { # LABEL PID
	label=$1
	start_connleak --libpq "$libpq" -p "$2"
	id=$(prog_id_named $cl_pid sock_ops_io)
	sysctl -q -w kernel.bpf_stats_enabled=1
	set -- $(run_cnt "$id")
	"$work/ioloop" echo 100000 > /dev/null
	set -- "$@" $(run_cnt "$id")
	"$work/ioloop" connect 2000 > /dev/null
	set -- "$@" $(run_cnt "$id")
	sysctl -q -w kernel.bpf_stats_enabled=0
	stop_connleak
	awk -v l="$label" -v c0=$1 -v t0=$2 -v c1=$3 -v t1=$4 -v c2=$5 -v t2=$6 'BEGIN {
		printf "  sock_ops_io as a bystander sees it, traced process %s: %d runs in 100000 echoes; %d runs in 2000 connects (%.2f a connect, %.0f ns a run, %.0f ns a connect)\n",
		       l, c1 - c0, c2 - c1, (c2 - c1) / 2000, (c2 > c1 ? (t2 - t1) / (c2 - c1) : 0), (t2 - t1) / 2000 }'
}
ops_stage() {
	cg=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break } }' /proc/self/mountinfo | head -1)
	[ -n "$cg" ] || { echo "  no cgroup v2 mounted: sock_ops stage skipped"; return 0; }
	start_bystander --no-sockets
	id=$(prog_id_named $cl_pid sock_ops_io)
	[ -n "$id" ] || { echo "  connleak loaded no sock_ops_io (kernel before 6.15?): stage skipped"; stop_connleak; return 0; }
	trap 'ops_cleanup; bench_cleanup' EXIT INT TERM
	ops_sib="$cg/connleak-bench-sibling-$$"
	mkdir "$ops_sib"
	echo "  sock_ops A/B in one process (in cgroup $(sed -n 's/^0:://p' /proc/self/cgroup)): $AB_PAIRS pairs, attached vs not (tp_floor ab -o)"
	for r in $(seq "$AB_REPEAT"); do
		printf '  echo, root            %s ' "$r"
		"$build/bench/tp_floor" ab -n "$AB_PAIRS" -b "$AB_BLOCK" -o "$id" -c "$cg" -k echo
		printf '  connect, root         %s ' "$r"
		"$build/bench/tp_floor" ab -n "$AB_PAIRS" -b 200 -o "$id" -c "$cg" -k connect
		printf '  connect, sibling cg.  %s ' "$r"
		"$build/bench/tp_floor" ab -n "$AB_PAIRS" -b 200 -o "$id" -c "$ops_sib" -k connect
	done
	stop_connleak
	ops_stats "in this cgroup" $idle_pid
	sh -c 'echo $$ > "$1/cgroup.procs" && exec sleep 100000' sh "$ops_sib" &
	ops_idle=$!
	sleep 0.2
	ops_stats "in a sibling cgroup" $ops_idle
	ops_cleanup
}
# Under query load (issue 13's last users): pgbench's `SELECT 1;` (every
# query begins a unit of work) traced by connleak, PGB_SECONDS each, over TCP
# (sock_ops_io) and over the server's Unix socket (the sock_send
# tracepoint), for each build of PGB_BUILDS in turn (alternating, first
# build first in odd rounds), PGB_ROUNDS rounds: pgbench's tps, the
# last-use stack copies userspace received and the stacks the kernel
# walked (CONNLEAK_STACK_STATS), the stack events dropped (the final
# snapshot's dropped_stacks of pgbench), connleak's peak RSS (VmHWM). Then
# one more run per build and transport with kernel.bpf_stats_enabled (only
# for it): the send program's ns per run and per pgbench transaction (one
# send per transaction, each the first send after an idle handle).
PGBENCH=${PGBENCH:-/usr/lib/postgresql/15/bin/pgbench}
PGB_SECONDS=${PGB_SECONDS:-10}
PGB_ROUNDS=${PGB_ROUNDS:-2}
pgb_run() { # BUILD_DIR TRANSPORT STATS(0/1)
	pgb_conninfo=$ci
	[ "$2" = unix ] && pgb_conninfo="host=$pgsock port=$port user=postgres dbname=postgres"
	echo 'SELECT 1;' > "$work/select1.sql"
	rm -f "$work/pgb.json"
	CONNLEAK_STACK_STATS=1 "$1/connleak" -q -i 1 --json "$work/pgb.json" -- \
		"$PGBENCH" -n -f "$work/select1.sql" -T "$PGB_SECONDS" -c 2 -j 2 "$pgb_conninfo" > "$work/pgb.out" 2>&1 &
	pgb_pid=$!
	prog=sock_ops_io
	[ "$2" = unix ] && prog=sock_send
	pgb_id=
	hwm=0
	sleep 0.5
	[ "$3" = 1 ] && sysctl -q -w kernel.bpf_stats_enabled=1
	while kill -0 $pgb_pid 2>/dev/null; do
		[ -n "$pgb_id" ] || pgb_id=$(prog_id_named $pgb_pid $prog)
		h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$pgb_pid/status 2>/dev/null)
		[ -n "$h" ] && hwm=$h
		[ "$3" = 1 ] && [ -n "$pgb_id" ] && run_cnt "$pgb_id" > "$work/pgb.cnt.tmp" 2>/dev/null &&
			mv "$work/pgb.cnt.tmp" "$work/pgb.cnt"
		sleep 0.2
	done
	wait $pgb_pid || true
	[ "$3" = 1 ] && sysctl -q -w kernel.bpf_stats_enabled=0
	/usr/bin/python3 - "$work/pgb.out" "$work/pgb.json" "$work/pgb.cnt" "$1" "$2" "$3" "$hwm" "$prog" <<'PY'
import json, re, sys
out, snap, cnt, build, transport, stats, hwm, prog = sys.argv[1:]
text = open(out).read()
tps = re.search(r"tps = ([\d.]+)", text)
tx = re.search(r"number of transactions actually processed: (\d+)", text)
lu = re.search(r"last users: (\d+) copies, (\d+) stacks walked", text)
try:
    s = json.load(open(snap))
    dropped = sum(p.get("dropped_stacks", 0) for p in s["processes"] if p.get("comm") == "pgbench")
except Exception:
    dropped = "?"
line = "  %-28s %-4s tps %8s  transactions %7s  last-use copies %6s  walked %3s  dropped %6s  peak RSS %5.1f MB" % (
    build[-28:], transport, tps.group(1) if tps else "?", tx.group(1) if tx else "?",
    lu.group(1) if lu else "?", lu.group(2) if lu else "?", dropped, int(hwm) / 1024)
if stats == "1":
    try:
        runs, ns = (int(v) for v in open(cnt).read().split())
        line += "\n    %s (bpf_stats): %d runs, %.0f ns/run, %.0f ns per transaction" % (
            prog, runs, ns / runs if runs else 0, ns / int(tx.group(1)) if tx else 0)
    except Exception as e:
        line += "\n    %s (bpf_stats): not read (%s)" % (prog, e)
print(line, flush=True)
PY
	rm -f "$work/pgb.cnt"
}
pgbench_stage() {
	builds=${PGB_BUILDS:-$build}
	rm -f "$work/pgin" "$work/pg.out" # a server of an earlier stage
	start_pg
	pgsock=$(sed -n 's/^port=[0-9]* dir=\(.*\)/\1/p' "$work/pg.out")/sock
	echo "  pgbench -n -f 'SELECT 1;' -T $PGB_SECONDS -c 2 -j 2 under connleak -- pgbench, $PGB_ROUNDS rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
	for r in $(seq "$PGB_ROUNDS"); do
		order=$builds
		[ $((r % 2)) = 0 ] && order=$(echo $builds | tr ' ' '\n' | tac | tr '\n' ' ')
		for b in $order; do pgb_run "$b" tcp 0; done
	done
	echo "  with bpf_stats (load $(cut -d' ' -f1-3 /proc/loadavg))"
	for t in tcp unix; do
		for b in $builds; do pgb_run "$b" $t 1; done
	done
	stop_pg
}

echo "traffic hooks cost: median of $RUNS runs; echo: $N send+recv per run, pq: $NPQ queries per run"
echo "kernel $(uname -r), $(nproc) CPUs"
[ "${PGB_ONLY:-0}" = 1 ] && { pgbench_stage; exit 0; }
[ "${NO_OPS:-0}" = 1 ] || ops_stage
[ "${OPS_ONLY:-0}" = 1 ] && exit 0
[ "${NO_AB:-0}" = 1 ] || ab_stage
[ "${AB_ONLY:-0}" = 1 ] && exit 0
measure echo "$N"
[ "${NO_PQ:-0}" = 1 ] && exit 0

start_pg
measure pqauto "$NPQ" "$ci"
measure pqxact "$NPQ" "$ci"
stop_pg
[ "${NO_PGB:-0}" = 1 ] || pgbench_stage
