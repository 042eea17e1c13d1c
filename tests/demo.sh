#!/usr/bin/env bash
# connleak demo (`make demo`): a throwaway PostgreSQL, a leaky libpq client,
# and connleak attached to it by PID.
#
#   tests/demo.sh [build/connleak]
#
# The client (pqclient churn) serves one "request" every 200 ms for 30 s:
# good_handler() connects, queries and finishes; every 4th request goes to
# leaky_handler(), which forgets PQfinish. connleak watches it for 6 seconds
# (--leak-after 2: a handle older than 2 s counts as a leak) and reports each
# second; the final JSON snapshot is summarized at the end. Everything (server,
# client, temporary files) is cleaned up on exit, whatever happens.
set -euo pipefail

CONNLEAK=${1:-build/connleak}
BUILD=$(dirname "$CONNLEAK")
PQCLIENT=${PQCLIENT:-$BUILD/tests/pqclient}
PG_BIN=/usr/lib/postgresql/15/bin

die() { echo "demo.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (connleak loads eBPF programs)"
[ -x "$CONNLEAK" ] || die "no connleak at $CONNLEAK (make build)"
[ -x "$PQCLIENT" ] || die "no pqclient at $PQCLIENT (make build)"
[ -x "$PG_BIN/postgres" ] || die "PostgreSQL 15 is not installed (make deps)"

DIR=$(mktemp -d /tmp/connleak-demo.XXXXXX)
CLIENT_PID=
cleanup() {
	if [ -n "$CLIENT_PID" ]; then
		kill "$CLIENT_PID" 2>/dev/null || true
		wait "$CLIENT_PID" 2>/dev/null || true
	fi
	if [ -f "$DIR/data/postmaster.pid" ]; then
		(cd "$DIR" && runuser -u postgres -- "$PG_BIN/pg_ctl" stop -D "$DIR/data" -m fast -w -s) >/dev/null 2>&1 || true
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_postgres() { (cd "$DIR" && runuser -u postgres -- "$@"); }

echo "== starting a throwaway PostgreSQL 15 in $DIR"
chmod 755 "$DIR"
chown postgres: "$DIR"
as_postgres "$PG_BIN/initdb" -D "$DIR/data" --auth=trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >>"$DIR/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
log_connections = on
log_disconnections = on
logging_collector = off
log_line_prefix = '%m [%p] app=%a '
EOF
as_postgres "$PG_BIN/pg_ctl" start -D "$DIR/data" -l "$DIR/server.log" -w -t 60 -s
echo "   listening on 127.0.0.1:$PORT"

CONNINFO="host=127.0.0.1 port=$PORT user=postgres dbname=postgres application_name=connleak_demo connect_timeout=10"

echo "== starting a leaky client: a request every 200 ms, every 4th leaks its connection"
"$PQCLIENT" churn "$CONNINFO" 30 200 4 >"$DIR/client.out" 2>&1 &
CLIENT_PID=$!
for _ in $(seq 100); do
	grep -q '^ready' "$DIR/client.out" && break
	kill -0 "$CLIENT_PID" 2>/dev/null || die "client failed: $(cat "$DIR/client.out")"
	sleep 0.1
done
grep -q '^ready' "$DIR/client.out" || die "client did not start"
echo "   client pid $CLIENT_PID"

echo
echo "== connleak -p $CLIENT_PID --leak-after 2 -i 1 -d 6 --json $DIR/report.json"
set +e
"$CONNLEAK" -p "$CLIENT_PID" --leak-after 2 -i 1 -d 6 --json "$DIR/report.json"
RC=$?
set -e
echo "== connleak exited with status $RC"

if [ -s "$DIR/report.json" ]; then
	echo
	echo "== final JSON snapshot, summarized"
	/usr/bin/python3 - "$DIR/report.json" <<'EOF'
import json, sys
snap = json.load(open(sys.argv[1]))
st = snap["tracking_stats"]
print("   acquired %(total_acquired)s  released %(total_released)s  active %(total_active)s  "
      "leaks %(total_leaks)s  leak_ratio %(leak_ratio)s%%" % st)
for p in snap["processes"]:
    print("   pid %s (%s): acquired %s released %s active %s leaks %s"
          % (p["pid"], p["comm"], p["acquired"], p["released"], p["active"], p["leaks"]))
    for s in p["top_connection_users"]:
        print("     %-40s acquired %4s released %4s active %3s leaks %3s"
              % (s["site"], s["acquired"], s["released"], s["active"], s["leaks"]))
EOF
fi
echo
N=$(grep -c "connection authorized: .*application_name=connleak_demo" "$DIR/server.log" || true)
echo "== the server's log: $N connections of the client so far (it started before connleak attached)"
exit "$RC"
