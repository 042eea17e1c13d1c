"""Runs connleak for the integration tests, and ConnleakTestCase, their
base class (a PostgreSQL per class, exact checks over the JSON).

    r = launch(["pqclient", "connectdb", ci, "5", "2"])   # connleak --json F -- CMD
    r.returncode, r.stdout, r.stderr, r.snapshot         # final snapshot (dict)
    p = r.process(pid)                                   # one process entry

    t = Tracer.attach([pid], leak_after=0)               # connleak -p PID ...
    snap = t.wait_snapshot(lambda s: ..., timeout=60)
    t.wait()                                             # exit status
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from .clients import pqclient_summaries
from .paths import CONNLEAK, PQCLIENT
from .pgserver import PgServer
from .snapshot import (CONN_KEYS, PROCESS_KEYS, SITE_KEYS, STATS_KEYS, conn_value, dump, find_process, json_lines,
                       proc_counts, read_json, site_counts, sites)

TIMEOUT = 180  # generous: a slow CI machine must not fail a correct tracer


class Run:
    """A finished connleak run."""

    def __init__(self, args, returncode, stdout, stderr, json_path):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.json_path = json_path
        self.snapshot = read_json(json_path) if json_path and json_path != "-" else None
        if json_path == "-":
            self.snapshots = json_lines(stdout)
            self.snapshot = self.snapshots[-1] if self.snapshots else None

    def process(self, pid):
        return find_process(self.snapshot or {}, pid)

    def describe(self):
        return ("command: %s\nexit status: %s\n--- stderr ---\n%s\n--- stdout ---\n%s\n--- final JSON ---\n%s"
                % (" ".join(map(str, self.args)), self.returncode, self.stderr, self.stdout[-4000:],
                   dump(self.snapshot) if self.snapshot is not None else "(none)"))


def connleak_args(leak_after=0, interval=0.5, json_path=None, duration=None, extra=()):
    args = [CONNLEAK, "--interval", str(interval), "--leak-after", str(leak_after)]
    if json_path is not None:
        args += ["--json", json_path]
    if duration is not None:
        args += ["--duration", str(duration)]
    return args + list(extra)


def launch(cmd, *, leak_after=0, interval=0.5, json_path=None, extra=(), timeout=TIMEOUT,
           env=None, tmpdir=None):
    """connleak [opts] --json FILE -- CMD; waits for it; returns a Run."""
    if json_path is None:
        d = tmpdir or tempfile.mkdtemp(prefix="connleak-json-")
        json_path = os.path.join(d, "snapshot.json")
    args = connleak_args(leak_after, interval, json_path, extra=extra) + ["--"] + list(cmd)
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, env=env)
    return Run(args, p.returncode, p.stdout, p.stderr, json_path)


def run_connleak(args, timeout=60, **kw):
    """Runs connleak with exactly these arguments (error cases)."""
    args = [CONNLEAK] + list(args)
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, **kw)
    return Run(args, p.returncode, p.stdout, p.stderr, None)


class Tracer:
    """connleak running in the background (attached to PIDs, or launching a
    command). Its stdout and stderr are drained by threads all along, so a
    chatty text report never blocks it on a full pipe."""

    def __init__(self, args, json_path, popen):
        self.args = args
        self.json_path = json_path
        self.popen = popen
        self.returncode = None
        self.last = None
        self.decode_errors = []  # partial JSON seen: the file was not replaced atomically
        self._out, self._err = [], []
        self._lines = queue.Queue()
        self._readers = [threading.Thread(target=self._drain, args=(popen.stdout, self._out, self._lines),
                                          daemon=True),
                         threading.Thread(target=self._drain, args=(popen.stderr, self._err, None), daemon=True)]
        for r in self._readers:
            r.start()

    @staticmethod
    def _drain(stream, buf, lines):
        for line in stream:
            buf.append(line)
            if lines is not None:
                lines.put(line)
        if lines is not None:
            lines.put(None)

    @property
    def stdout(self):
        return "".join(self._out)

    @property
    def stderr(self):
        return "".join(self._err)

    @classmethod
    def launch(cls, cmd, *, leak_after=0, interval=0.2, json_path=None, extra=(), env=None):
        """connleak ... -- CMD; CMD inherits connleak's stdin, a pipe the test
        writes with send(); wait_line() reads connleak's (and CMD's) stdout."""
        if json_path is None:
            json_path = os.path.join(tempfile.mkdtemp(prefix="connleak-json-"), "snapshot.json")
        args = connleak_args(leak_after, interval, json_path, extra=extra) + ["--"] + [str(c) for c in cmd]
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1, env=env)
        return cls(args, json_path, p)

    @classmethod
    def attach(cls, pids, *, leak_after=0, interval=0.2, json_path=None, duration=None, extra=()):
        """connleak ... -p PID [-p PID ...]."""
        if json_path is None:
            json_path = os.path.join(tempfile.mkdtemp(prefix="connleak-json-"), "snapshot.json")
        args = connleak_args(leak_after, interval, json_path, duration, extra)
        for pid in pids:
            args += ["-p", str(pid)]
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        return cls(args, json_path, p)

    def wait_line(self, pattern, timeout=60):
        """The next stdout line matching pattern (a regex): its match."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no line matching %r within %ss\n%s" % (pattern, timeout, self.describe()))
            if line is None:
                self._lines.put(None)
                raise AssertionError("stdout closed before a line matching %r\n%s" % (pattern, self.describe()))
            m = re.search(pattern, line)
            if m:
                return m

    def send(self, line):
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def alive(self):
        return self.popen.poll() is None

    def wait_snapshot(self, pred=lambda s: True, timeout=60):
        """Polls the JSON file until pred(snapshot) holds; returns the last
        snapshot read (pred may not hold on timeout or if connleak exited:
        the caller asserts on it then, so the failure shows the numbers)."""
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()
            snap = self._read()
            if snap is not None and pred(snap):
                return snap
            if exited or time.monotonic() > deadline:
                return self.last
            time.sleep(0.05)

    def _read(self):
        try:
            snap = read_json(self.json_path)
        except ValueError as e:  # a torn file: recorded, tests assert there is none
            self.decode_errors.append(str(e))
            return None
        if snap is not None:
            self.last = snap
        return snap

    def wait_attached(self, timeout=60):
        """Attach is done once the first snapshot is written."""
        return self.wait_snapshot(lambda s: True, timeout)

    def _close_stdin(self):
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()  # a launched command waiting on it sees EOF
            except OSError:
                pass

    def wait(self, timeout=TIMEOUT):
        """Waits for connleak to exit; returns its status (final JSON in .last)."""
        self._close_stdin()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
            raise AssertionError("connleak did not exit within %ss\n%s" % (timeout, self.describe()))
        for r in self._readers:
            r.join(30)
        self.returncode = self.popen.returncode
        self._read()
        return self.returncode

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self):
        if self.alive():
            self.popen.kill()

    def cleanup(self):
        self._close_stdin()
        self.kill()
        try:
            self.popen.wait(timeout=30)
        except Exception:
            pass

    def describe(self):
        return ("command: %s\nexit status: %s\n--- stderr ---\n%s\n--- stdout (tail) ---\n%s\n"
                "--- last JSON ---\n%s" % (" ".join(self.args), self.returncode, self.stderr,
                                           self.stdout[-3000:], dump(self.last) if self.last else "(none)"))


class ConnleakTestCase(unittest.TestCase):
    """Starts one PostgreSQL per test class; helpers for exact checks."""

    maxDiff = None
    server = None

    @classmethod
    def setUpClass(cls):
        for path, what in ((CONNLEAK, "connleak (CONNLEAK)"), (PQCLIENT, "pqclient (PQCLIENT)")):
            if not os.access(path, os.X_OK):
                raise AssertionError("%s not found at %s: build it first (make build)" % (what, path))
        cls.server = PgServer().start()
        cls.addClassCleanup(cls.server.stop)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="connleak-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self._apps = 0

    def app(self, tag=""):
        """A unique application_name for this test."""
        self._apps += 1
        name = re.sub(r"[^A-Za-z0-9_]", "_", "%s_%s_%d" % (self._testMethodName, tag, self._apps))
        return name[-60:]

    def json_path(self, name="snapshot.json"):
        return os.path.join(self.tmp, name)

    def launch(self, cmd, **kw):
        kw.setdefault("tmpdir", self.tmp)
        return launch(cmd, **kw)

    def launch_pqclient(self, mode, conninfo, *args, expect_rc=0, **kw):
        """connleak ... -- pqclient MODE CONNINFO ARGS; checks exit statuses,
        the JSON's shape, and returns (run, pqclient summary, process entry)."""
        r = self.launch([PQCLIENT, mode, conninfo] + [str(a) for a in args], **kw)
        self.assertEqual(r.returncode, expect_rc, "connleak's exit status\n" + r.describe())
        summ = pqclient_summaries(r.stdout)
        self.assertTrue(summ, "no pqclient summary in connleak's stdout\n" + r.describe())
        self.assertIsNotNone(r.snapshot, "no JSON snapshot written\n" + r.describe())
        self.check_snapshot(r.snapshot, r.describe())
        mine = [x for x in summ if x["mode"] == mode] or summ
        proc = r.process(mine[0]["pid"])
        self.assertIsNotNone(proc, "pid %d of pqclient not in the snapshot\n%s" % (mine[0]["pid"], r.describe()))
        return r, mine[0], proc

    def check_snapshot(self, snap, ctx=""):
        """Shape of a version-1 snapshot, and totals == sums over processes."""
        msg = ctx or dump(snap)
        self.assertEqual(snap.get("version"), 1, msg)
        for k in ("time", "leak_after_s", "tracking_stats", "processes"):
            self.assertIn(k, snap, msg)
        st = snap["tracking_stats"]
        for k in STATS_KEYS:
            self.assertIn(k, st, msg)
        for p in snap["processes"]:
            for k in PROCESS_KEYS:
                self.assertIn(k, p, msg)
            for s in p["top_connection_users"]:
                for k in SITE_KEYS:
                    self.assertIn(k, s, msg)
            for c in p["connections"]:
                for k in CONN_KEYS:
                    self.assertIn(k, c, msg)
            self.assertEqual(p["dropped"], 0, msg)
            if p["exited"]:
                self.assertEqual((p["active"], p["leaks"], p["connections"]), (0, 0, []), msg)
            self.assertLessEqual(len(p["connections"]), p["connections_total"], msg)
            if len(p["connections"]) == p["connections_total"]:  # all listed (not cut by --connections[-max])
                # --server lists connections made before the attach too: not active.
                self.assertEqual(p["active"], sum(1 for c in p["connections"] if not c.get("pre_attach")), msg)
                self.assertEqual(p["leaks"], sum(1 for c in p["connections"] if c["leak"]), msg)
        procs = snap["processes"]
        self.assertEqual(snap["connections_listed"], sum(len(p["connections"]) for p in procs), msg)
        # Older exited processes are folded, one row per comm: counted in
        # the totals like the processes listed.
        folded = snap.get("exited_folded", [])
        self.assertEqual(snap.get("exited_folded_processes", 0), sum(g["processes"] for g in folded), msg)
        for g in folded:
            for k in ("acquired", "released", "leaked_at_exit"):
                self.assertEqual(g[k], sum(s[k] for s in g["sites"]), msg)

        def total(k):
            return sum(p[k] for p in procs) + sum(g.get(k, 0) for g in folded)
        self.assertEqual(
            (st["total_acquired"], st["total_released"], st["total_active"], st["total_leaks"],
             st["total_leaked_at_exit"], st["total_dropped"]),
            (total("acquired"), total("released"), total("active"), total("leaks"),
             total("leaked_at_exit"), total("dropped")), "tracking_stats vs processes\n" + msg)
        ratio = st["total_leaks"] * 100.0 / st["total_acquired"] if st["total_acquired"] else 0.0
        self.assertAlmostEqual(st["leak_ratio"], ratio, places=1, msg=msg)

    def await_counts(self, t, pid, want, timeout=60):
        """Waits until pid's counters in t's JSON are want (a counts() dict),
        then asserts them exactly; returns (snapshot, process entry)."""
        snap = t.wait_snapshot(lambda s: find_process(s, pid) is not None
                               and proc_counts(find_process(s, pid)) == want, timeout=timeout)
        ctx = t.describe()
        self.assertIsNotNone(snap, ctx)
        self.check_snapshot(snap, ctx)
        proc = find_process(snap, pid)
        self.assertIsNotNone(proc, "pid %d not in the snapshot\n%s" % (pid, ctx))
        self.assertEqual(proc_counts(proc), want, ctx)
        return snap, proc

    def finish_tracer(self, t, want_rc=0):
        """Waits for connleak to exit by itself; checks its status, that no
        torn JSON was ever read, and the final snapshot's shape."""
        rc = t.wait()
        self.assertEqual(rc, want_rc, "connleak's exit status\n" + t.describe())
        self.assertEqual(t.decode_errors, [], "torn JSON read: not replaced atomically\n" + t.describe())
        self.assertIsNotNone(t.last, t.describe())
        self.check_snapshot(t.last, t.describe())
        return t.last

    def check_live_connections(self, proc, tid, want_conns, leak, ctx):
        """proc's live handles are exactly want_conns (pqclient's addresses;
        None: don't compare), all made by thread tid, leak flags as given."""
        if want_conns is not None:
            got = sorted(conn_value(c["conn"]) for c in proc["connections"])
            self.assertEqual(got, sorted(want_conns), "live handles (pqclient's own addresses)\n" + ctx)
        for c in proc["connections"]:
            self.assertEqual(c["tid"], tid, ctx)
            self.assertIs(c["leak"], leak, ctx)
            self.assertIn("pqclient", c["site"], ctx)
            self.assertGreaterEqual(c["age_ms"], 0, ctx)

    def assertCounts(self, proc, ctx="", **expected):
        """Exact process counters (all of them: unspecified counters must be 0,
        exited must be given)."""
        want = {"exited": expected.pop("exited"), "acquired": 0, "released": 0, "released_untracked": 0,
                "active": 0, "leaks": 0, "leaked_at_exit": 0, "pings": 0, "resets": 0, "dropped": 0}
        for k, v in expected.items():
            if k not in want:
                raise KeyError(k)
            want[k] = v
        self.assertEqual(proc_counts(proc), want, "%s\nprocess entry:\n%s" % (ctx, dump(proc)))

    def assertSites(self, proc, expected, ctx=""):
        """expected: list of site_counts dicts, one per distinct site (any order).
        Returns {site: entry}."""
        ss = sites(proc)
        got = sorted((site_counts(s) for s in ss.values()), key=lambda d: sorted(d.items()))
        want = sorted((dict({"released": 0, "active": 0, "leaks": 0, "leaked_at_exit": 0}, **e) for e in expected),
                      key=lambda d: sorted(d.items()))
        self.assertEqual(got, want, "%s\nper-site counts:\n%s" % (ctx, dump(proc["top_connection_users"])))
        for s in ss.values():
            self.assertGreaterEqual(s["avg_ms"], 0, ctx)
            self.assertGreaterEqual(s["max_ms"] + 1e-6, s["avg_ms"], ctx)
        return ss


def kill_quietly(popen):
    if popen.poll() is None:
        try:
            popen.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        popen.communicate(timeout=30)
    except Exception:
        pass


def which(name):
    return shutil.which(name)
