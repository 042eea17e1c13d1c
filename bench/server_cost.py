"""What --server costs (make bench, section "server"): a client holding
1,000 connections (half over TCP, half over the Unix socket) made before
the attach, on a throwaway PostgreSQL with max_connections raised; connleak
attached to it with --server (A) and without (B), in alternating runs.

- the per-interval query (pg_stat_activity, one query for every session):
  its round trip as connleak's worker measures it (send to last row), the
  backends' fd tables read for the Unix-socket clients, the traced
  process's sockets (both ends), the worker's CPU per read, and the
  tracing thread's part (taking the reads), all from CONNLEAK_SERVER_STATS;
- connleak's whole CPU time per interval, A - B (utime+stime);
- exactness: every one of the 1,000 connections listed, pre-attach, with
  its backend PID and state."""

import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pylib"))

from connleak_testkit import benchlib as bl  # noqa: E402
from connleak_testkit.pgserver import PgServer  # noqa: E402
from connleak_testkit.snapshot import find_process, read_json  # noqa: E402

HOLDER = r"""
import os, sys, psycopg2
tcp, unix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conns = [psycopg2.connect(tcp if i % 2 == 0 else unix) for i in range(n)]
print(" ".join(str(c.get_backend_pid()) for c in conns), flush=True)
sys.stdin.read()
"""

STATS = re.compile(r"server stats: reads (\d+) rows_per_read ([\d.]+) query_ms ([\d.]+) backend_scan_ms ([\d.]+) "
                   r"worker_cpu_ms_per_read ([\d.]+) held_scan_ms ([\d.]+) annotate_ms ([\d.]+) \(x(\d+)\)")


def one_run(connleak, pid, dsn, with_server, seconds, interval, tmp, tag):
    json_path = os.path.join(tmp, "server-%s.json" % tag)
    args = [connleak, "-q", "-j", json_path, "-i", str(interval), "-d", str(seconds), "--leak-after", "0",
            "-p", str(pid)]
    if with_server:
        args += ["--server", dsn]
    env = dict(os.environ, CONNLEAK_SERVER_STATS="1")
    mon = bl.Monitored(args, tmp, name="server-%s" % tag, env=env)
    if mon.wait(seconds + 120) != 0:
        raise RuntimeError("connleak failed:\n" + mon.describe())
    out = {"cpu_s": mon.cpu_s, "wall_s": mon.wall_s, "peak_rss_kb": mon.peak_rss_kb}
    if with_server:
        m = STATS.search(mon.stderr())
        if not m:
            raise RuntimeError("no server stats:\n" + mon.describe())
        out.update(reads=int(m.group(1)), rows_per_read=float(m.group(2)), query_ms=float(m.group(3)),
                   backend_scan_ms=float(m.group(4)), worker_cpu_ms_per_read=float(m.group(5)),
                   held_scan_ms=float(m.group(6)), annotate_ms=float(m.group(7)), annotations=int(m.group(8)))
        out["snapshot"] = read_json(json_path)
    return out


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(connleak, n=1000, rounds=3, seconds=10, interval=1.0, tmp="/tmp"):
    server = PgServer(extra_conf={"max_connections": str(n + 100)})
    server.start()
    holder = None
    try:
        dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % server.port
        unix = "host=%s port=%d user=postgres dbname=postgres" % (server.socket_dir, server.port)
        holder = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER,
                                   dsn + " application_name=holder", unix + " application_name=holder", str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        backends = sorted(int(x) for x in holder.stdout.readline().split())
        if len(backends) != n:
            raise RuntimeError("holder made %d connections of %d" % (len(backends), n))
        a, b = [], []
        for i in range(rounds):
            a.append(one_run(connleak, holder.pid, dsn, True, seconds, interval, tmp, "a%d" % i))
            b.append(one_run(connleak, holder.pid, dsn, False, seconds, interval, tmp, "b%d" % i))
        # Exactness: every connection listed, from the server, with its backend.
        snap = a[-1].pop("snapshot")
        for r in a:
            r.pop("snapshot", None)
        conns = find_process(snap, holder.pid)["connections"]
        listed = sorted(c["backend_pid"] for c in conns if c.get("pre_attach") and c.get("server")
                        and c["server"]["state"] == "idle")
        added = [(x["cpu_s"] - y["cpu_s"]) / (x["wall_s"] / interval) * 1000 for x, y in zip(a, b)]
        return {
            "connections": n,
            "interval_s": interval,
            "seconds_per_run": seconds,
            "rounds": rounds,
            "rows_per_read": stats([r["rows_per_read"] for r in a]),
            "query_ms": stats([r["query_ms"] for r in a]),
            "backend_scan_ms": stats([r["backend_scan_ms"] for r in a]),
            "worker_cpu_ms_per_read": stats([r["worker_cpu_ms_per_read"] for r in a]),
            "held_scan_ms": stats([r["held_scan_ms"] for r in a]),
            "annotate_ms": stats([r["annotate_ms"] for r in a]),
            "added_cpu_ms_per_interval": stats(added),
            "cpu_s_with": stats([r["cpu_s"] for r in a]),
            "cpu_s_without": stats([r["cpu_s"] for r in b]),
            "peak_rss_kb_with": max(r["peak_rss_kb"] for r in a),
            "peak_rss_kb_without": max(r["peak_rss_kb"] for r in b),
            "joined_exact": listed == backends,
            "joined": len(listed),
        }
    finally:
        if holder:
            holder.kill()
            holder.wait()
        server.stop()


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--connleak", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    print(json.dumps(measure(args.connleak, args.n, args.rounds, args.seconds, tmp=bl.make_tmpdir()), indent=1))
