"""Python services: each route's acquisitions are a row of their own, named
by the route's file:line (Python frames captured in the kernel at the
acquisition), with exact counts cross-checked against the server."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PYTHON  # noqa: E402
from connleak_testkit.pgserver import PgServer  # noqa: E402
from connleak_testkit.snapshot import dump  # noqa: E402
from connleak_testkit.tracer import Tracer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APPS = os.path.join(os.path.dirname(HERE), "apps", "python")
GUNICORN = "/usr/bin/gunicorn"


def mark(file, name):
    """The line tagged `# MARK:name` in an app file."""
    path = os.path.join(APPS, file)
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if "# MARK:%s" % name in line:
                return "%s:%d" % (path, i)
    raise AssertionError("no MARK:%s in %s" % (name, file))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
        assert r.read() == b"ok\n"


def rows(snap):
    """Every (pid, site entry) of the snapshot."""
    return [(p["pid"], s) for p in snap["processes"] for s in p["top_connection_users"]]


class PythonSiteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = PgServer()
        cls.server.start()
        cls.dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def serve(self, extra_args, requests, concurrent=False):
        """gunicorn under connleak; `requests` {path: n} sent; returns the
        snapshot once it has counted them all, and the route lines."""
        port = free_port()
        pidfile = os.path.join(self.tmp, "gunicorn.pid")
        env_cmd = ["env", "APP_DSN=" + self.dsn, GUNICORN, "-b", "127.0.0.1:%d" % port, "--chdir", APPS,
                   "--pid", pidfile] + extra_args + ["webapp:app"]
        t = Tracer.launch(env_cmd, interval=0.3, extra=["--top", "20", "--stacks", "40"])
        self.addCleanup(t.cleanup)
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                self.assertLess(time.time(), deadline, "gunicorn did not start: %s" % t.describe())
                time.sleep(0.1)
        time.sleep(1)  # every worker booted and seen by connleak
        mark_log = self.server.log_mark()
        jobs = [path for path, n in requests.items() for _ in range(n)]
        if concurrent:
            threads = [threading.Thread(target=lambda p=p: get(port, p)) for p in jobs]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        else:
            for p in jobs:
                get(port, p)
        total = sum(requests.values())
        # Counted, and every acquisition's stack unwound: a copied stack
        # reaches userspace just after its count (the count first, so no
        # stack runs ahead of its site), so a snapshot in between holds a
        # frameless row for it.
        snap = t.wait_snapshot(lambda s: s["tracking_stats"]["total_acquired"] == total
                               and all("frames" in r for _, r in rows(s)), timeout=60)
        server_counts = {name: self.server.count_authorized("t_py_" + name, since=mark_log)
                         for name in ("direct", "closing", "audit", "report")}
        with open(pidfile) as f:
            os.kill(int(f.read()), signal.SIGTERM)
        t.wait()
        return snap, server_counts

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="connleak-py-")

    def check_routes(self, snap, server, requests):
        ctx = dump(snap)
        lines = {r: mark("webapp.py", r) for r in ("direct", "closing", "audit", "report")}
        helper = mark("db.py", "get_conn")
        per_route = {r: [0, 0] for r in lines}
        for pid, s in rows(snap):
            route = [r for r, l in lines.items() if any(l + ")" in f for f in s["frames"])]
            self.assertEqual(len(route), 1, "row %s names no single route: %s" % (s["site"], ctx))
            r = route[0]
            per_route[r][0] += s["acquired"]
            per_route[r][1] += s["released"]
            if r in ("direct", "closing"):
                self.assertEqual(s["site"], "%s (%s)" % (r, lines[r]), ctx)
            else:
                # Through the shared helper: the helper's line, and the route
                # where the stacks part when the process served both.
                self.assertIn(s["site"], ("%s (%s) \u2192 get_conn (%s)" % (r, lines[r], helper),
                                          "get_conn (%s)" % helper), ctx)
        for pid in {pid for pid, _ in rows(snap)}:
            labels = [s["site"] for p, s in rows(snap) if p == pid]
            self.assertEqual(len(labels), len(set(labels)), ctx)
        for r, n in requests.items():
            name = r.strip("/")
            self.assertEqual(server[name], n, "server count of %s" % name)
            acquired, released = per_route[name]
            self.assertEqual(acquired, n, "%s acquired: %s" % (name, ctx))
            self.assertEqual(released, n if name in ("closing", "report") else 0, "%s released: %s" % (name, ctx))
        first = snap["processes"]
        self.assertTrue(all(p["python_frames_truncated"] == 0 for p in first), ctx)

    def test_gunicorn_routes_named_with_exact_counts(self):
        requests = {"/direct": 7, "/closing": 5, "/audit": 4, "/report": 3}
        snap, server = self.serve(["-w", "2"], requests)
        self.check_routes(snap, server, requests)
        # The leaking routes lead: the first row of a worker that leaked
        # names a leaking route's line.
        for p in snap["processes"]:
            users = p["top_connection_users"]
            if users and any(s["leaks"] for s in users):
                self.assertTrue(users[0]["leaks"] > 0, dump(p))

    def test_threaded_workers_name_each_threads_route(self):
        requests = {"/direct": 6, "/closing": 6, "/audit": 6, "/report": 6}
        snap, server = self.serve(["-w", "1", "--threads", "4"], requests, concurrent=True)
        self.check_routes(snap, server, requests)

    def run_script(self, mode, n, wait_ready=True):
        t = Tracer.launch([PYTHON, os.path.join(APPS, "scripts.py"), mode, self.dsn, str(n)], interval=0.3,
                          extra=["--stacks", "80"])
        self.addCleanup(t.cleanup)
        return t

    def test_psycopg3_through_ctypes(self):
        log = self.server.log_mark()
        t = self.run_script("psycopg3", 3)
        t.wait_line(r"^ready")
        snap = t.wait_snapshot(lambda s: s["tracking_stats"]["total_acquired"] == 3)
        t.send("")
        t.wait()
        self.assertEqual(self.server.count_authorized("t_py_pg3", since=log), 3)
        (pid, s), = rows(snap)
        self.assertEqual(s["site"], "psycopg3_leak (%s)" % mark("scripts.py", "pg3"), dump(snap))
        self.assertEqual((s["acquired"], s["released"], s["active"]), (3, 0, 3), dump(snap))

    def test_exit_right_after_acquiring(self):
        log = self.server.log_mark()
        t = self.run_script("exit", 1)
        t.wait()
        snap = t.last
        self.assertEqual(self.server.count_authorized("t_py_exit", since=log), 1)
        (pid, s), = rows(snap)
        self.assertEqual(s["site"], "exit_right_after (%s)" % mark("scripts.py", "exit"), dump(snap))
        self.assertEqual((s["acquired"], s["leaked_at_exit"]), (1, 1), dump(snap))

    def test_python_after_exec(self):
        """A traced process that is not Python (a shell) exec's Python: the
        new image is looked at again (the kernel counts traced execs), so its
        acquisition is named by its Python frames."""
        log = self.server.log_mark()
        script = "sleep 0.5; exec %s %s exit '%s' 1" % (PYTHON, os.path.join(APPS, "scripts.py"), self.dsn)
        t = Tracer.launch(["/bin/sh", "-c", script], interval=0.3, extra=["--stacks", "80"])
        self.addCleanup(t.cleanup)
        t.wait()
        snap = t.last
        self.assertEqual(self.server.count_authorized("t_py_exit", since=log), 1)
        (pid, s), = rows(snap)
        self.assertEqual(s["site"], "exit_right_after (%s)" % mark("scripts.py", "exit"), dump(snap))
        self.assertEqual((s["acquired"], s["leaked_at_exit"]), (1, 1), dump(snap))

    def test_recursion_deeper_than_the_frame_bound(self):
        log = self.server.log_mark()
        t = self.run_script("deep", 4)
        t.wait_line(r"^ready")
        snap = t.wait_snapshot(lambda s: s["tracking_stats"]["total_acquired"] == 4)
        t.send("")
        t.wait()
        self.assertEqual(self.server.count_authorized("t_py_deep", since=log), 4)
        (pid, s), = rows(snap)
        proc = snap["processes"][0]
        self.assertEqual(s["site"], "recurse (%s)" % mark("scripts.py", "deep"), dump(snap))
        self.assertEqual((s["acquired"], s["active"]), (4, 4), dump(snap))
        self.assertEqual((proc["python_stacks"], proc["python_frames_truncated"]), (4, 4), dump(snap))


if __name__ == "__main__":
    unittest.main(verbosity=2)
