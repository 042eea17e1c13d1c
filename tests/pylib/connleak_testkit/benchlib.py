"""Shared by bench/bench.py and tests/integration/test_exactness.py.

Runs connleak and the bench tools (pqstress, uprobe_floor, bystander), samples
connleak's footprint, and checks connleak's counts against the client's own.
Python 3 standard library only.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time

from .snapshot import find_process, read_json

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Tools:
    """Paths of connleak and the bench tools in a build directory."""

    def __init__(self, build_dir, connleak=None):
        self.build_dir = os.path.abspath(build_dir)
        self.connleak = connleak or os.path.join(self.build_dir, "connleak")
        bench = os.path.join(self.build_dir, "bench")
        self.pqstress = os.path.join(bench, "pqstress")
        self.uprobe_floor = os.path.join(bench, "uprobe_floor")
        self.bystander = os.path.join(bench, "bystander")

    def missing(self, names=("connleak", "pqstress", "uprobe_floor", "bystander")):
        return [getattr(self, n) for n in names if not os.access(getattr(self, n), os.X_OK)]


# ---------------------------------------------------------------- numbers

def summary(values):
    """min/median/max (and n) of a list of numbers."""
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {"n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values)}


def tagged_json(text, tag):
    """The JSON objects of lines 'TAG {...}' in text."""
    out = []
    for line in text.splitlines():
        if line.startswith(tag + " {"):
            try:
                out.append(json.loads(line[len(tag) + 1:]))
            except ValueError:
                pass
    return out


def system_libpq():
    """The libpq connleak probes for a launched command (ldconfig's)."""
    try:
        out = subprocess.run(["ldconfig", "-p"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=30).stdout
        for line in out.splitlines():
            if "libpq.so.5 " in line and "x86-64" in line and "=>" in line:
                return line.split("=>")[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for p in ("/usr/lib/x86_64-linux-gnu/libpq.so.5", "/lib/x86_64-linux-gnu/libpq.so.5"):
        if os.path.exists(p):
            return p
    return None


# ---------------------------------------------------------------- footprint

def bpf_maps_of(pid):
    """The BPF maps a process holds open, from /proc/PID/fdinfo (memlock is
    what the kernel charges for each)."""
    maps = []
    d = "/proc/%d/fdinfo" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return maps
    for fd in fds:
        try:
            with open(os.path.join(d, fd)) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if "map_type" not in info:
            continue
        m = {k: int(info[k].strip(), 0) for k in ("map_type", "key_size", "value_size", "max_entries",
                                                   "memlock", "map_id") if k in info}
        if any(x.get("map_id") == m.get("map_id") for x in maps):
            continue  # one map behind two fds (sockets.bpf.c reuses connleak's procs map)
        maps.append(m)
    names = _bpf_map_names()
    for m in maps:
        m["name"] = names.get(m.get("map_id"), "")
    return sorted(maps, key=lambda m: m.get("map_id", 0))


def bpf_progs_of(pid):
    """The BPF programs a process holds open, from /proc/PID/fdinfo: run_cnt
    and run_time_ns (counted while kernel.bpf_stats_enabled is 1), and
    recursion_misses (runs the kernel skipped)."""
    progs = {}
    d = "/proc/%d/fdinfo" % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return []
    for fd in fds:
        try:
            with open(os.path.join(d, fd)) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if "prog_type" not in info or "prog_id" not in info:
            continue
        p = {k: int(info[k].strip(), 0) for k in ("prog_id", "run_time_ns", "run_cnt", "recursion_misses")
             if k in info}
        progs[p["prog_id"]] = p
    names = _bpf_names("prog")
    for p in progs.values():
        p["name"] = names.get(p["prog_id"], "")
    return sorted(progs.values(), key=lambda p: p["prog_id"])


def _bpf_map_names():
    return _bpf_names("map")


def _bpf_names(kind):
    bpftool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if not bpftool:
        return {}
    try:
        out = subprocess.run([bpftool, "-j", kind, "show"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
        return {m["id"]: m.get("name", "") for m in json.loads(out or "[]")}
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}


class Monitored:
    """A child process whose peak RSS and CPU time are measured.

    Peak RSS: VmHWM of /proc/PID/status, sampled every 20 ms (the kernel's own
    high-water mark, so only growth in the last 20 ms before exit can be
    missed). CPU time: utime + stime of /proc/PID/stat read while the process
    is a zombie (waitid WNOWAIT), i.e. its own time, without its children's:
    wait4's rusage would add the command connleak launched and waited for.
    stdout and stderr go to files (no pipe can fill up)."""

    def __init__(self, args, tmpdir, name="proc", env=None, stdin=subprocess.DEVNULL):
        self.args = [str(a) for a in args]
        self.out_path = os.path.join(tmpdir, name + ".out")
        self.err_path = os.path.join(tmpdir, name + ".err")
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        self.t0 = time.monotonic()
        self.popen = subprocess.Popen(self.args, stdin=stdin, stdout=self._out, stderr=self._err, env=env)
        self.pid = self.popen.pid
        self.peak_rss_kb = 0
        self.cpu_s = None
        self.children_cpu_s = None
        self.wall_s = None
        self.returncode = None
        self._exited = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        status = "/proc/%d/status" % self.pid
        while True:
            try:
                with open(status) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is not None:
                self.wall_s = time.monotonic() - self.t0
                try:
                    with open("/proc/%d/stat" % self.pid) as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    # fields[0] is field 3 (state): utime is field 14, stime 15,
                    # cutime 16, cstime 17 (children waited for)
                    self.cpu_s = (int(fields[11]) + int(fields[12])) / CLK_TCK
                    self.children_cpu_s = (int(fields[13]) + int(fields[14])) / CLK_TCK
                except (OSError, IndexError, ValueError):
                    pass
                self._exited.set()
                return
            time.sleep(0.02)

    def alive(self):
        return not self._exited.is_set()

    def wait(self, timeout=None):
        """Exit status, or None on timeout."""
        if not self._exited.wait(timeout):
            return None
        self.returncode = self.popen.wait()
        self._out.close()
        self._err.close()
        return self.returncode

    def send_signal(self, sig):
        if self.alive():
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def kill(self):
        self.send_signal(signal.SIGKILL)
        self.wait(30)

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def footprint(self):
        return {"peak_rss_kb": self.peak_rss_kb, "cpu_s": self.cpu_s, "wall_s": self.wall_s,
                "cpu_percent": (100.0 * self.cpu_s / self.wall_s) if self.cpu_s is not None and self.wall_s else None}

    def describe(self):
        return ("command: %s\nexit status: %s\n--- stderr ---\n%s\n--- stdout (tail) ---\n%s"
                % (" ".join(self.args), self.returncode, self.stderr()[-3000:], self.stdout()[-3000:]))


def process_cpu_s(pid, children=True):
    """CPU time of a running process (and of its children it waited for)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    n = int(fields[11]) + int(fields[12])
    if children:
        n += int(fields[13]) + int(fields[14])
    return n / CLK_TCK


def wait_for(pred, timeout, interval=0.02):
    """Polls pred() until it returns a true value (returned) or timeout (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def connleak_cmd(tools, json_path, interval=1, leak_after=0, extra=()):
    return [tools.connleak, "-q", "--interval", str(interval), "--leak-after", str(leak_after),
            "--json", json_path] + [str(e) for e in extra]


# ---------------------------------------------------------------- exactness

def run_exactness(tools, tmpdir, total, procs, threads, leak_every, ping_every, api="mix",
                  max_conns=None, max_sites=None, max_procs=None, timeout=300):
    """connleak -- pqstress (PROCS processes x THREADS threads, TOTAL
    lifecycles, every LEAK_EVERY-th held until exit, a PQping every
    PING_EVERY-th), then compares connleak's counts with pqstress's own:
    once while every process still holds its leaked handles (live), once after
    they all exited (final).

    With no max_*: everything must match exactly and nothing be dropped.
    With a max_* (maps deliberately too small): connleak must not crash,
    must report dropped > 0, and what it counts must still add up.

    Returns a dict: the figures, "checks" [{name, got, want, ok}], "ok"."""
    small = any(x is not None for x in (max_conns, max_sites, max_procs))
    json_path = os.path.join(tmpdir, "exact-%d.json" % os.getpid())
    extra = [] if small else ["--top", 1000]  # every stack listed: checked one by one
    for flag, v in (("--max-conns", max_conns), ("--max-sites", max_sites), ("--max-procs", max_procs)):
        if v is not None:
            extra += [flag, v]
    client = [tools.pqstress, "-n", total, "-P", procs, "-t", threads, "-l", leak_every, "-g", ping_every,
              "-a", api, "-W", "-T", max(60, timeout)]
    args = connleak_cmd(tools, json_path, interval=0.25, leak_after=0, extra=extra) + ["--"] + client
    mon = Monitored(args, tmpdir, name="exactness")
    res = {"total": total, "procs": procs, "threads": threads, "leak_every": leak_every,
           "ping_every": ping_every, "api": api, "max_conns": max_conns, "max_sites": max_sites,
           "max_procs": max_procs, "checks": []}
    checks = res["checks"]

    def check(name, got, want, ok=None):
        checks.append({"name": name, "got": got, "want": want, "ok": (got == want) if ok is None else bool(ok)})

    try:
        t0 = time.monotonic()
        def client_done():
            text = mon.stdout()
            if '"role":"total"' in text:
                return text
            return None if mon.alive() else (text or "(connleak exited)")
        out = wait_for(client_done, timeout)
        res["client_s"] = time.monotonic() - t0
        lines = tagged_json(out or "", "pqstress")
        totals = [x for x in lines if x["role"] == "total"]
        workers = [x for x in lines if x["role"] == "proc"]
        if not totals:
            mon.kill()
            res["error"] = "pqstress did not finish\n" + mon.describe()
            res["ok"] = False
            return res
        tot = totals[0]
        res["client"] = {k: tot[k] for k in ("acquired", "finished", "held", "pings", "elapsed_ns")}
        res["client_workers"] = workers
        res["bpf_maps"] = bpf_maps_of(mon.pid)

        def live_ok(snap):
            if not snap:
                return False
            for w in workers:
                p = find_process(snap, w["pid"])
                if not p or (p["acquired"], p["released"] + p["released_untracked"], p["pings"]) != \
                        (w["acquired"], w["finished"], w["pings"]):
                    return False
            return True
        # Counters are final in the kernel once pqstress printed its total;
        # the next snapshot (every 0.25 s) shows them. Small maps may lose
        # whole processes: then only wait a little.
        live = wait_for(lambda: (lambda s: s if live_ok(s) else None)(read_json(json_path, torn_as_none=True)),
                        15 if not small else 3)
        live = live or read_json(json_path, torn_as_none=True)
        res["live_snapshot_stats"] = (live or {}).get("tracking_stats")
        # Runs of connleak's programs the kernel skipped (none expected).
        res["bpf_recursion_misses"] = sum(p.get("recursion_misses", 0) for p in bpf_progs_of(mon.pid))
        try:  # pqstress ends its hold and exits; then so does connleak
            os.kill(tot["pid"], signal.SIGUSR1)
        except ProcessLookupError:
            pass
        rc = mon.wait(timeout)
        if rc is None:
            mon.kill()
            res["error"] = "connleak did not exit\n" + mon.describe()
            res["ok"] = False
            return res
        final = read_json(json_path, torn_as_none=True)
        res["connleak_rc"] = rc
        res["footprint"] = mon.footprint()
        fst = (final or {}).get("tracking_stats", {})
        res["connleak_final"] = fst
        res["stderr"] = mon.stderr()[-2000:]

        check("connleak exit status (pqstress's)", rc, 0)
        check("final snapshot written", final is not None, True)
        if not small:
            for w in workers:
                p = find_process(live, w["pid"]) or {}
                got = {k: p.get(k) for k in ("acquired", "released", "released_untracked", "active", "leaks",
                                             "pings", "dropped", "exited")}
                want = {"acquired": w["acquired"], "released": w["finished"], "released_untracked": 0,
                        "active": w["held"], "leaks": w["held"], "pings": w["pings"], "dropped": 0,
                        "exited": False}
                check("live pid %d" % w["pid"], got, want)
                p = find_process(final, w["pid"]) or {}
                got = {k: p.get(k) for k in ("acquired", "released", "released_untracked", "active",
                                             "leaked_at_exit", "pings", "dropped", "exited")}
                want = {"acquired": w["acquired"], "released": w["finished"], "released_untracked": 0,
                        "active": 0, "leaked_at_exit": w["held"], "pings": w["pings"], "dropped": 0,
                        "exited": True}
                check("final pid %d" % w["pid"], got, want)
                # Per stack: the split of the same counts by acquiring
                # stack, exact too, no stack event dropped.
                for when, snap_ in (("live", live), ("final", final)):
                    p = find_process(snap_, w["pid"]) or {}
                    got = stacks_by_client_key(p)
                    want = client_stacks(w, {k.split("/")[0] for k in got} - {"tail"})
                    check("%s pid %d per stack (API, thread): [acquired, released]" % (when, w["pid"]), got, want)
                    got = {k: p.get(k) for k in ("dropped_stacks", "stacks_unwound", "stacks_truncated")}
                    check("%s pid %d stacks" % (when, w["pid"]), got,
                          {"dropped_stacks": 0, "stacks_unwound": w["acquired"], "stacks_truncated": 0})
            got = {k: fst.get(k) for k in ("total_acquired", "total_released", "total_active",
                                           "total_leaked_at_exit", "total_dropped")}
            want = {"total_acquired": tot["acquired"], "total_released": tot["finished"], "total_active": 0,
                    "total_leaked_at_exit": tot["held"], "total_dropped": 0}
            check("final totals", got, want)
            lst = res["live_snapshot_stats"] or {}
            got = {k: lst.get(k) for k in ("total_acquired", "total_released", "total_active", "total_dropped")}
            want = {"total_acquired": tot["acquired"], "total_released": tot["finished"],
                    "total_active": tot["held"], "total_dropped": 0}
            check("live totals", got, want)
        else:
            check("dropped > 0 (maps too small)", fst.get("total_dropped"), "> 0",
                  ok=(fst.get("total_dropped") or 0) > 0)
            traced = 0
            for w in workers:
                p = find_process(final, w["pid"])
                if p is None:
                    continue  # not traced: no room in the process map (dropped)
                traced += 1
                check("pid %d acquired exact" % w["pid"], p["acquired"], w["acquired"])
                check("pid %d released + released_untracked == finished" % w["pid"],
                      p["released"] + p["released_untracked"], w["finished"])
                check("pid %d leaked_at_exit <= held" % w["pid"], p["leaked_at_exit"], "<= %d" % w["held"],
                      ok=p["leaked_at_exit"] <= w["held"])
            res["traced_workers"] = traced
            if max_procs is None:
                check("every worker process traced", traced, len(workers))
    finally:
        if mon.alive():
            mon.kill()
    res["ok"] = all(c["ok"] for c in checks)
    return res


_PQSTRESS_CALLS = {"start": "PQconnectStart(", "startparams": "PQconnectStartParams(", "connectdb": "PQconnectdb(",
                   "params": "PQconnectdbParams(", "setdblogin": "PQsetdbLogin("}


def _pqstress_api_lines():
    """pqstress.c's line of each API's call in acquire(): where a stack's
    site frame says it was called from."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench", "pqstress.c")
    lines = {}
    with open(src) as f:
        for n, line in enumerate(f, 1):
            for api, call in _PQSTRESS_CALLS.items():
                if "return " + call in line:
                    lines.setdefault(api, n)
    return lines


def stacks_by_client_key(proc):
    """connleak's rows (stacks) of one pqstress process, keyed as pqstress
    counts them: "API/main" or "API/thread" -> [acquired, released]. The
    API is read from the innermost frame's line in acquire(); the APIs the
    compiler made tail calls return to worker_main directly and share one
    stack per thread kind: "tail/..."."""
    from .stacks import function
    api_of_line = {n: api for api, n in _pqstress_api_lines().items()}
    out = {}
    for row in proc.get("top_connection_users", []):
        frames = row.get("frames") or [row["site"]]
        kind = "thread" if any(function(f) == "start_thread" for f in frames) else "main"
        m = re.search(r" pqstress\.c:(\d+)$", frames[0])
        api = api_of_line.get(int(m.group(1)), "?") if m and function(frames[0]) == "acquire" else "tail"
        got = out.setdefault(api + "/" + kind, [0, 0])
        got[0] += row["acquired"]
        got[1] += row["released"]
    return out


def client_stacks(worker, separate):
    """pqstress's own counts per acquiring stack, keyed as stacks_by_client_key:
    the APIs in `separate` on their own, the others as "tail"."""
    out = {}
    for api, kind, acquired, finished in worker.get("stacks", []):
        got = out.setdefault((api if api in separate else "tail") + "/" + kind, [0, 0])
        got[0] += acquired
        got[1] += finished
    return out


def failed_checks(res):
    return [c for c in res.get("checks", []) if not c["ok"]]


def make_tmpdir(prefix="connleak-bench-"):
    return tempfile.mkdtemp(prefix=prefix)
