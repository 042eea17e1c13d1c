# Shared by the shell benchmarks (socket_hooks_cost.sh, socket_io_cost.sh):
# their set-up, a throwaway PostgreSQL, connleak run in the background, and
# the clean-up. Sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init NAME [BUILD_DIR]   # $here $build $connleak $libpq $work $idle_pid
#
# Then: median < FILE; start_connleak ARGS... / stop_connleak (sets and
# clears $cl_pid); start_pg / stop_pg (sets $ci, a TCP conninfo of a
# throwaway server). Everything started is stopped at exit, and
# kernel.bpf_stats_enabled is put back as it was.

# bench_init NAME [BUILD_DIR]: checks, the work directory and an idle
# process for connleak to trace when the workload itself is not traced.
bench_init() {
	here=$(cd "$(dirname "$0")" && pwd)
	build=$(cd "${2:-$here/../build}" && pwd)
	connleak=$build/connleak
	[ -x "$connleak" ] || { echo "no $connleak: build first (make build)" >&2; exit 1; }
	[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
	libpq=$(ldconfig -p | awk '/libpq\.so\.5 /{print $NF; exit}')
	work=$(mktemp -d "/tmp/connleak-$1.XXXXXX")
	cl_pid=
	pg_pid=
	stats_before=$(sysctl -n kernel.bpf_stats_enabled)
	# Statistics add two clock reads to every program run: off unless a
	# measure asks for them.
	sysctl -q -w kernel.bpf_stats_enabled=0
	trap bench_cleanup EXIT INT TERM
	sleep 100000 &
	idle_pid=$!
}

bench_cleanup() {
	[ -n "$cl_pid" ] && kill "$cl_pid" 2>/dev/null || true
	[ -n "$idle_pid" ] && kill "$idle_pid" 2>/dev/null || true
	stop_pg
	sysctl -q -w kernel.bpf_stats_enabled="$stats_before" || true
	rm -rf "$work"
}

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# connleak ARGS in the background until stop_connleak; returns once its
# first snapshot is written (it is attached by then).
start_connleak() {
	rm -f "$work/snap.json"
	"$connleak" -q -i 0.5 --json "$work/snap.json" "$@" > "$work/connleak.out" 2>&1 &
	cl_pid=$!
	i=0
	while [ ! -s "$work/snap.json" ]; do
		sleep 0.1
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 $cl_pid 2>/dev/null; then
			echo "connleak did not start:" >&2
			cat "$work/connleak.out" >&2
			exit 1
		fi
	done
}

stop_connleak() {
	kill -INT $cl_pid
	wait $cl_pid || true
	cl_pid=
}

# A throwaway PostgreSQL (tests/pylib/connleak_testkit/pgserver.py, run as
# the postgres user on a free port); it stops when its stdin closes.
start_pg() {
	mkfifo "$work/pgin"
	/usr/bin/python3 "$here/../tests/pylib/connleak_testkit/pgserver.py" < "$work/pgin" > "$work/pg.out" 2>&1 &
	pg_pid=$!
	exec 3> "$work/pgin"
	i=0
	until grep -q '^port=' "$work/pg.out"; do
		sleep 0.2
		i=$((i + 1))
		[ $i -lt 300 ] || { echo "no PostgreSQL:" >&2; cat "$work/pg.out" >&2; exit 1; }
	done
	port=$(sed -n 's/^port=\([0-9]*\).*/\1/p' "$work/pg.out")
	ci="host=127.0.0.1 port=$port user=postgres dbname=postgres"
}

stop_pg() {
	[ -n "$pg_pid" ] || return 0
	exec 3>&-
	wait "$pg_pid" 2>/dev/null || true
	pg_pid=
}
