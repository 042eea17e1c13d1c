"""The whole host: `-p MASTER` of a pre-forking server whose master has no
libpq (its existing workers are traced), and `--all` (every libpq process,
now and later: the host's libpq, a private copy, one loaded with dlopen, one
in another mount namespace), never connleak itself.

Counts are exact and checked against the server's log_connections."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import CONNLEAK, PQCLIENT  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer, connleak_args  # noqa: E402
from connleak_testkit.clients import Client  # noqa: E402
from connleak_testkit.snapshot import counts, dump, find_process, proc_counts  # noqa: E402
from connleak_testkit.procs import end_process  # noqa: E402

WAIT = 60
PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFORK = os.path.join(HERE, "apps", "python", "prefork.py")
WORKERS = 3


def maps_libpq(pid):
    with open("/proc/%d/maps" % pid) as f:
        return any("libpq.so" in line for line in f)


def system_libpq():
    out = subprocess.run(["ldd", PQCLIENT], stdout=subprocess.PIPE, text=True, check=True).stdout
    m = re.search(r"libpq\.so\.5 => (\S+)", out)
    return os.path.realpath(m.group(1))


class PreforkTest(ConnleakTestCase):
    """gunicorn's shape: a master without libpq, workers forked before attach."""

    def start_prefork(self, app):
        d = tempfile.mkdtemp(prefix="connleak-prefork-", dir=self.tmp)
        p = subprocess.Popen([PYTHON, PREFORK, self.server.conninfo("x").replace("application_name=x", ""), app,
                              str(WORKERS), d], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
        self.addCleanup(end_process, p)
        self.addCleanup(lambda: open(os.path.join(d, "stop"), "w").close())
        m = re.match(r"master pid=(\d+) workers=([\d,]+)", p.stdout.readline())
        if m is None:
            p.kill()
            self.fail("prefork did not start: %s" % p.communicate()[1])
        master, workers = int(m.group(1)), [int(w) for w in m.group(2).split(",")]
        self.assertFalse(maps_libpq(master), "the master must not map libpq (the point of the test)")
        for w in workers:
            self.assertTrue(maps_libpq(w), "worker %d maps no libpq" % w)
        return p, d, master, workers

    def wait_done(self, p, d):
        """Each worker's DIR/done.PID line, within WAIT seconds; on failure,
        what each worker is doing (not a wait without end on a pipe)."""
        deadline = time.monotonic() + WAIT
        done = {}
        while len(done) < WORKERS and time.monotonic() < deadline and p.poll() is None:
            for name in os.listdir(d):
                if name.startswith("done.") and int(name[5:]) not in done:
                    with open(os.path.join(d, name)) as f:
                        m = re.match(r"done pid=(\d+) app=(\S+) acquired=(\d+) closed=(\d+)", f.read())
                    self.assertIsNotNone(m, name)
                    done[int(m.group(1))] = (m.group(2), int(m.group(3)), int(m.group(4)))
            time.sleep(0.05)
        if len(done) < WORKERS:
            states = []
            for pid in [int(t) for t in open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()]:
                try:
                    with open("/proc/%d/wchan" % pid) as f:
                        states.append("%d: %s" % (pid, f.read()))
                except OSError as e:
                    states.append("%d: %s" % (pid, e))
            self.fail("%d of %d workers done in %ss (%s); prefork exit %s; workers: %s" % (
                len(done), WORKERS, WAIT, sorted(done), p.poll(), ", ".join(states)))
        return done

    def run_workers(self, p, d, app, tracers):
        mark = self.server.log_mark()
        open(os.path.join(d, "go"), "w").close()
        done = self.wait_done(p, d)
        for t in tracers:
            for pid, (name, acquired, closed) in done.items():
                # The server's own count of this worker's connections.
                self.assertEqual(self.server.count_authorized(name, mark), acquired)
                want = counts(False, acquired=acquired, released=closed, active=acquired - closed,
                              leaks=acquired - closed)
                self.await_counts(t, pid, want, timeout=WAIT)
        return done

    def test_master_without_libpq_traces_its_existing_workers(self):
        app = self.app()
        p, d, master, workers = self.start_prefork(app)
        # -p MASTER alone, and -p MASTER -p W1 (today: "has no libpq mapped").
        ta = Tracer.attach([master], json_path=self.json_path("a.json"))
        self.addCleanup(ta.cleanup)
        tb = Tracer.attach([master, workers[0]], json_path=self.json_path("b.json"))
        self.addCleanup(tb.cleanup)
        # The JSON's bound over all processes: 2 listed of the workers' live handles.
        tc = Tracer.attach([master], json_path=self.json_path("c.json"), extra=["--connections-max", "2"])
        self.addCleanup(tc.cleanup)
        for t in (ta, tb, tc):
            self.assertIsNotNone(t.wait_attached(timeout=WAIT), t.describe())
        done = self.run_workers(p, d, app, (ta, tb, tc))
        self.assertEqual(sorted(done), sorted(workers))
        for t in (ta, tb):
            snap = t.last
            self.assertEqual(proc_counts(find_process(snap, master)), counts(False), t.describe())
        live = sum(acquired - closed for _, acquired, closed in done.values())
        self.assertGreater(live, 2, "the bound must cut something (the point of the check)")
        for t, bound in ((ta, 1000), (tc, 2)):
            snap = t.last
            listed = sum(len(q["connections"]) for q in snap["processes"])
            self.assertEqual((listed, snap["connections_listed"]), (min(bound, live), min(bound, live)), t.describe())
            for pid, (name, acquired, closed) in done.items():
                self.assertEqual(find_process(snap, pid)["connections_total"], acquired - closed, t.describe())
        open(os.path.join(d, "stop"), "w").close()
        self.assertEqual(p.wait(timeout=WAIT), 0)
        for t in (ta, tb):
            snap = self.finish_tracer(t)  # ends by itself: every traced process exited
            for pid, (name, acquired, closed) in done.items():
                self.assertEqual(proc_counts(find_process(snap, pid)),
                                 counts(True, acquired=acquired, released=closed, leaked_at_exit=acquired - closed),
                                 t.describe())

    def test_no_follow_keeps_the_named_pids_only(self):
        app = self.app()
        p, d, master, workers = self.start_prefork(app)
        t = Tracer.attach([workers[1]], json_path=self.json_path(), extra=["--no-follow"])
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(timeout=WAIT), t.describe())
        open(os.path.join(d, "go"), "w").close()
        want = counts(False, acquired=3, released=2, active=1, leaks=1)  # worker 1: 1 + 2 connections
        snap, _ = self.await_counts(t, workers[1], want)
        self.assertEqual(sorted(x["pid"] for x in snap["processes"]), [workers[1]], t.describe())
        # --no-follow with a master without libpq: nothing to probe, as before.
        r = subprocess.run([CONNLEAK, "--no-follow", "-p", str(master), "-d", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=WAIT)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("has no libpq mapped", r.stderr)


class AllTest(ConnleakTestCase):
    """connleak --all: processes started after the attach, each kind of libpq."""

    def start_all(self):
        args = connleak_args(0, 0.2, self.json_path(), extra=["--all"])
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        t = Tracer(args, self.json_path(), p)
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(timeout=WAIT), t.describe())
        return t

    def copy_libpq(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        shutil.copy(system_libpq(), os.path.join(d, "libpq.so.5"))
        return d

    def client(self, app, env=None, prefix=()):
        c = Client.start(self.server.conninfo(app), env=env) if not prefix else None
        if prefix:
            p = subprocess.Popen(list(prefix) + [PQCLIENT, "interactive", self.server.conninfo(app)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 bufsize=1, env=env)
            m = re.match(r"ready pid=(\d+)", p.stdout.readline())
            if not m:
                p.kill()
                self.fail("pqclient did not start: %s" % p.communicate()[1])
            c = Client(p, int(m.group(1)))
        self.addCleanup(c.cleanup)
        return c

    def use(self, t, c, app, libpq_dir):
        """Waits until connleak traces c (found by a scan: its libpq file is
        new), then 3 connections, 1 finished; exact against the server."""
        with open("/proc/%d/maps" % c.pid) as f:
            mapped = [line for line in f if "libpq.so" in line]
        self.assertTrue(mapped, "client maps no libpq")
        snap = t.wait_snapshot(lambda s: find_process(s, c.pid) is not None, timeout=WAIT)
        self.assertIsNotNone(find_process(snap, c.pid), "pid %d never traced\n%s" % (c.pid, t.describe()))
        mark = self.server.log_mark()
        c.cmd("open 3")
        c.cmd("finish-old 1")
        self.await_counts(t, c.pid, counts(False, acquired=3, released=1, active=2, leaks=2))
        self.assertEqual(self.server.count_authorized(app, mark), 3)

    def test_processes_started_after_attach_each_libpq(self):
        t = self.start_all()
        own = t.popen.pid
        # 1. The host's libpq, started after attach, connecting at once: the
        # kernel adopts it at its first call (no scan could be that quick).
        app = self.app("host")
        mark = self.server.log_mark()
        r = subprocess.run([PQCLIENT, "connectdb", self.server.conninfo(app), "4", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        pid = int(re.search(r"pid=(\d+)", r.stdout).group(1))
        self.assertEqual(self.server.count_authorized(app, mark), 4)
        self.await_counts(t, pid, counts(True, acquired=4, released=3, leaked_at_exit=1))

        # 2. Its own copy of libpq (another file), through LD_LIBRARY_PATH.
        app = self.app("copy")
        env = dict(os.environ, LD_LIBRARY_PATH=self.copy_libpq("copy"))
        self.use(t, self.client(app, env=env), app, None)

        # 3. Another mount namespace, a private copy bind-mounted over the
        # host's path: the same path names another file there.
        ns_copy = os.path.join(self.copy_libpq("ns"), "libpq.so.5")
        app = self.app("ns")
        c = self.client(app, prefix=["unshare", "-m", "--propagation", "private", "sh", "-c",
                                     'mount --bind "$0" "$1" && shift && exec "$@"', ns_copy, system_libpq()])
        with open("/proc/%d/maps" % c.pid) as f:
            inodes = {int(line.split()[4]) for line in f if "libpq.so" in line}
        self.assertEqual(inodes, {os.stat(ns_copy).st_ino}, "the namespace's client maps the private copy")
        self.assertNotEqual(os.readlink("/proc/%d/ns/mnt" % c.pid), os.readlink("/proc/self/ns/mnt"))
        self.use(t, c, app, None)

        # 4. libpq loaded later with dlopen, from yet another file.
        dl_copy = os.path.join(self.copy_libpq("dlopen"), "libpq.so.5")
        app = self.app("dlopen")
        p = subprocess.Popen([PYTHON, "-c", DLOPEN_CLIENT, dl_copy, self.server.conninfo(app)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1)
        self.addCleanup(end_process, p)
        pid = int(re.match(r"ready pid=(\d+)", p.stdout.readline()).group(1))
        self.assertFalse(maps_libpq(pid))
        p.stdin.write("load\n")
        p.stdin.flush()
        self.assertEqual(p.stdout.readline().strip(), "loaded")
        snap = t.wait_snapshot(lambda s: find_process(s, pid) is not None, timeout=WAIT)
        self.assertIsNotNone(find_process(snap, pid), t.describe())
        mark = self.server.log_mark()
        p.stdin.write("connect\n")
        p.stdin.flush()
        self.assertEqual(p.stdout.readline().strip(), "connected")
        self.await_counts(t, pid, counts(False, acquired=2, released=1, active=1, leaks=1))
        self.assertEqual(self.server.count_authorized(app, mark), 2)

        # connleak never lists itself, in any snapshot.
        self.assertIsNone(find_process(t.last, own), t.describe())
        t.signal(2)
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertIsNone(find_process(t.last, own), t.describe())
        self.assertNotIn("warning", t.stderr, t.describe())

    def test_usage(self):
        for extra, msg in ((["--all", "-p", "1"], "--all traces every process already"),
                           (["--all", "--no-follow"], "--no-follow does not go with it"),
                           (["--all", "--connections", "0"], "--connections must be 1 or more"),
                           (["--all", "--connections-max", "0"], "--connections-max must be 1 or more")):
            r = subprocess.run([CONNLEAK] + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(msg, r.stderr)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)


# A process without libpq that loads a copy with dlopen when told, then
# connects twice through it and finishes one.
DLOPEN_CLIENT = r"""
import ctypes, os, sys
print("ready pid=%d" % os.getpid(), flush=True)
sys.stdin.readline()
pq = ctypes.CDLL(sys.argv[1])
pq.PQconnectdb.restype = ctypes.c_void_p
pq.PQconnectdb.argtypes = [ctypes.c_char_p]
pq.PQstatus.argtypes = [ctypes.c_void_p]
pq.PQfinish.argtypes = [ctypes.c_void_p]
print("loaded", flush=True)
sys.stdin.readline()
conns = [pq.PQconnectdb(sys.argv[2].encode()) for _ in range(2)]
assert all(pq.PQstatus(c) == 0 for c in conns), "connection failed"
pq.PQfinish(conns[0])
print("connected", flush=True)
sys.stdin.readline()
"""

if __name__ == "__main__":
    unittest.main()
