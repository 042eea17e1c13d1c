#!/usr/bin/python3
"""Cost of connleak's tp_btf/sched_process_fork program per fork of a traced
process holding N live libpq handles (the copy to `inherited`), from the
kernel's own accounting (kernel.bpf_stats_enabled: run_time_ns / run_cnt).

    bench/fork_cost.py CONNLEAK CONNINFO N K    (as root, kernel.bpf_stats_enabled=1)
"""
import ctypes, json, os, subprocess, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pylib"))
from connleak_testkit.benchlib import wait_for  # noqa: E402
from connleak_testkit.snapshot import read_json  # noqa: E402

def child_main(conninfo, n, k):
    pq = ctypes.CDLL("libpq.so.5")
    pq.PQconnectdb.restype = ctypes.c_void_p
    pq.PQconnectdb.argtypes = [ctypes.c_char_p]
    print("ready", flush=True)
    sys.stdin.readline()
    hs = [pq.PQconnectdb(conninfo.encode()) for _ in range(n)]
    print("open", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(k):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    print("forked %.1f" % ((time.perf_counter() - t0) / k * 1e6), flush=True)
    sys.stdin.readline()

def prog_stats(name):
    out = json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show", "name", name]))
    if isinstance(out, dict):
        out = [out]
    return sum(p.get("run_time_ns", 0) for p in out), sum(p.get("run_cnt", 0) for p in out)

if sys.argv[1] == "child":
    child_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)

connleak, conninfo, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = subprocess.Popen([sys.executable, __file__, "child", conninfo, str(n), str(k)], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)
assert c.stdout.readline().strip() == "ready"
js = "/tmp/connleak-forkcost.json"
if os.path.exists(js):
    os.unlink(js)
t = subprocess.Popen([connleak, "-q", "-i", "0.2", "-j", js, "-p", str(c.pid)], stderr=subprocess.DEVNULL)
assert wait_for(lambda: os.path.exists(js), 60, 0.1), "connleak wrote no snapshot within 60 s"
c.stdin.write("go\n"); c.stdin.flush()
assert c.stdout.readline().strip() == "open"
time.sleep(0.5)
t0, n0 = prog_stats("handle_fork")
c.stdin.write("fork\n"); c.stdin.flush()
per_fork_wall = c.stdout.readline().split()[1]
t1, n1 = prog_stats("handle_fork")
time.sleep(1)
snap = read_json(js)
c.stdin.write("end\n"); c.stdin.flush(); c.wait()
t.terminate(); t.wait()
kids = [p for p in snap["processes"] if p["pid"] != c.pid]
print("N=%d K=%d: handle_fork runs %d (traced forks %d), %.0f ns per run on average, %.0f ns per traced fork "
      "(all of the window's run time / K), fork+wait wall %s us; dropped %d" %
      (n, k, n1 - n0, k, (t1 - t0) / max(1, n1 - n0), (t1 - t0) / k, per_fork_wall,
       sum(p["dropped"] for p in snap["processes"])))
