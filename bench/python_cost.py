"""What capturing Python frames adds per acquisition (make bench, section
"python"): a Python client (psycopg2, 12 Python frames deep) connects and
closes in a loop under connleak, with Python frames (A) and without
(CONNLEAK_NO_PYTHON=1, B), in alternating runs.

- call_exit's run time per acquisition (kernel.bpf_stats_enabled): the program that
  takes the Python frames, so A - B is the kernel-side cost per acquisition;
- the client's CPU time per connect+close cycle, A - B (noisy: a connect to
  a real server costs ~1 ms)."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pylib"))

from connleak_testkit import benchlib as bl  # noqa: E402

CLIENT = r"""
import os, sys, time, psycopg2
dsn, n = sys.argv[1], int(sys.argv[2])
def nest(depth):
    if depth:
        return nest(depth - 1)
    c = psycopg2.connect(dsn)
    c.close()
time.sleep(0.5)
t0 = time.process_time()
for _ in range(n):
    nest(10)
print("client " + '{"cpu_ns_per_cycle": %f}' % ((time.process_time() - t0) * 1e9 / n), flush=True)
time.sleep(1)  # connleak's counters read after the last cycle
"""


def one_run(connleak, dsn, n, python_frames, tmp):
    script = os.path.join(tmp, "client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    env = dict(os.environ)
    if not python_frames:
        env["CONNLEAK_NO_PYTHON"] = "1"
    json_path = os.path.join(tmp, "snap.json")
    p = subprocess.Popen([connleak, "-q", "--leak-after", "0", "--json", json_path, "--",
                          "/usr/bin/python3", script, dsn, str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # The programs' counters, read just before the client's end.
    progs = None
    out = ""
    while p.poll() is None:
        cur = {q["name"]: q for q in bl.bpf_progs_of(p.pid)}
        if cur.get("call_exit", {}).get("run_cnt", 0):
            progs = cur
        time.sleep(0.05)
    out = p.stdout.read()
    cyc = bl.tagged_json(out, "client")[0]["cpu_ns_per_cycle"]
    snap = json.load(open(json_path))
    proc = snap["processes"][0]
    ce = progs["call_exit"]
    # call_exit also runs at the return of libpq's nested calls: its time
    # per acquisition is what one connect costs it.
    return {"call_exit_ns_per_acquisition": ce["run_time_ns"] / proc["acquired"], "runs": ce["run_cnt"],
            "client_cpu_ns_per_cycle": cyc, "python_stacks": proc.get("python_stacks", 0),
            "acquired": proc["acquired"]}


def measure(connleak, dsn, n=1000, rounds=3):
    tmp = tempfile.mkdtemp(prefix="connleak-pycost-")
    res = {"A_python_frames": [], "B_no_python_frames": []}
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        before = f.read().strip()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    try:
        for r in range(rounds):
            order = [True, False] if r % 2 == 0 else [False, True]
            for py in order:
                res["A_python_frames" if py else "B_no_python_frames"].append(one_run(connleak, dsn, n, py, tmp))
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(before)

    def med(k, key):
        return statistics.median(x[key] for x in res[k])

    res["call_exit_added_ns"] = med("A_python_frames", "call_exit_ns_per_acquisition") - med(
        "B_no_python_frames", "call_exit_ns_per_acquisition")
    res["client_cpu_added_ns_per_cycle"] = med("A_python_frames", "client_cpu_ns_per_cycle") - med(
        "B_no_python_frames", "client_cpu_ns_per_cycle")
    return res


if __name__ == "__main__":
    from connleak_testkit.pgserver import PgServer
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    s = PgServer()
    s.start()
    try:
        dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % s.port
        print(json.dumps(measure(os.path.join(build, "connleak"), dsn), indent=1))
    finally:
        s.stop()
