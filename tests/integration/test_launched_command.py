"""What becomes of a launched command when connleak ends first (issue #18
item 4): like under `timeout` or `perf record --`, it is stopped with all it
started (SIGTERM to the command, to a process under it once its parent is
gone, SIGKILL --kill-after seconds later), and the final report
counts those exits; with --keep-command it is left running and its PIDs are
said. Counts are checked against the server's log."""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import CONNLEAK, PYTHON  # noqa: E402
from connleak_testkit.snapshot import find_process  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Run, connleak_args  # noqa: E402

# A pre-fork server in miniature (gunicorn's shape): the master connects,
# forks a worker that connects too, both write their PID once connected and
# wait for a signal. With "stubborn" the worker ignores SIGTERM. With
# "relay" the master, on SIGTERM, after 0.3 s tells the worker (SIGUSR1)
# to close its connection and exit, waits for it, closes its own and
# exits; a SIGTERM to the worker itself kills it with its connection open.
SERVER = r"""
import os, signal, sys, time, psycopg2
conninfo, pidfile, mode = sys.argv[1], sys.argv[2], sys.argv[3]
# Not connleak's stdout and stderr: a kept server must not hold the test's pipes.
devnull = os.open(os.devnull, os.O_RDWR)
os.dup2(devnull, 1)
os.dup2(devnull, 2)
master_conn = psycopg2.connect(conninfo)
def note(who):
    with open(pidfile, "a") as f:
        f.write("%s %d\n" % (who, os.getpid()))
worker = os.fork()
if worker == 0:
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker_conn = psycopg2.connect(conninfo)
    if mode == "relay":
        def finish(*_):
            worker_conn.close()
            os._exit(0)
        signal.signal(signal.SIGUSR1, finish)
    note("worker")
    while True:
        time.sleep(60)
if mode == "relay":
    def stop(*_):
        time.sleep(0.3)  # its own shutdown first; a worker signalled with it would be gone by now
        os.kill(worker, signal.SIGUSR1)
        os.waitpid(worker, 0)
        master_conn.close()
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
note("master")
while True:
    time.sleep(60)
"""


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class LaunchedCommandTest(ConnleakTestCase):

    def start(self, app, mode="plain", extra=()):
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(SERVER)
        self.pidfile = os.path.join(self.tmp, "pids")
        self.json = self.json_path()
        # --leak-after 600: no leak notices on stderr, only what is said of the command.
        self.args = connleak_args(600, 0.5, self.json, extra=extra) + [
            "--", PYTHON, script, self.server.conninfo(app), self.pidfile, mode]
        self.mark = self.server.log_mark()
        p = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.kill_leftovers)
        return p

    def pids(self, timeout=60):
        """{"master": pid, "worker": pid} once both connected."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(self.pidfile) as f:
                    found = dict((w, int(p)) for w, p in (line.split() for line in f if line.strip()))
                if len(found) == 2:
                    return found
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("the server did not connect within %d s" % timeout)

    def kill_leftovers(self):
        try:
            with open(self.pidfile) as f:
                for line in f:
                    try:
                        os.kill(int(line.split()[1]), signal.SIGKILL)
                    except (OSError, IndexError, ValueError):
                        pass
        except OSError:
            pass

    def finish(self, p, timeout=60):
        out, err = p.communicate(timeout=timeout)
        return Run(self.args, p.returncode, out, err, self.json)

    def assertExitsCounted(self, r, pids, app):
        """Both processes exited holding their one connection, and the server
        saw exactly those two connections, now gone."""
        ctx = r.describe()
        for who, pid in pids.items():
            proc = find_process(r.snapshot, pid)
            self.assertIsNotNone(proc, who + "\n" + ctx)
            self.assertTrue(proc["exited"], who + "\n" + ctx)
            self.assertEqual((proc["acquired"], proc["released"], proc["active"], proc["leaked_at_exit"]),
                             (1, 0, 0, 1), who + "\n" + ctx)
        self.assertEqual(self.server.count_authorized(app, self.mark), 2)
        deadline = time.time() + 30
        while time.time() < deadline:
            left = self.server.psql("select count(*) from pg_stat_activity where application_name = '%s'" % app)
            if left == "0":
                break
            time.sleep(0.1)
        self.assertEqual(left, "0", "the server still has the connections\n" + ctx)

    def test_duration_stops_the_command_and_its_children(self):
        app = self.app()
        p = self.start(app, extra=["-d", "8"])
        pids = self.pids()
        r = self.finish(p)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stderr, "", r.describe())  # SIGTERM sufficed: nothing to say
        for who, pid in pids.items():
            self.assertFalse(alive(pid), "%s %d outlived connleak\n%s" % (who, pid, r.describe()))
        self.assertExitsCounted(r, pids, app)

    def test_untraced_orphans_are_stopped_too(self):
        """--no-follow: the command's children are not traced. SIGTERM goes to
        the command first; the shell dies of it and its children go to init,
        out of the command's tree: they must still be stopped, not left
        running."""
        p = subprocess.Popen([CONNLEAK, "--no-follow", "-q", "-d", "2", "--", "sh", "-c",
                              "sleep 300 >/dev/null 2>&1 & echo $!; sleep 301 >/dev/null 2>&1 & echo $!; wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=60)
        kids = [int(x) for x in out.split()]
        self.addCleanup(lambda: [os.kill(k, signal.SIGKILL) for k in kids if alive(k)])
        self.assertEqual(len(kids), 2, out + err)
        deadline = time.time() + 5
        while time.time() < deadline and any(alive(k) for k in kids):
            time.sleep(0.05)
        self.assertEqual([k for k in kids if alive(k)], [], "outlived connleak: " + err)

    def test_sigterm_stops_the_command(self):
        app = self.app()
        p = self.start(app)
        pids = self.pids()
        p.send_signal(signal.SIGTERM)
        r = self.finish(p)
        self.assertEqual(r.returncode, 0, r.describe())
        for who, pid in pids.items():
            self.assertFalse(alive(pid), "%s %d outlived connleak\n%s" % (who, pid, r.describe()))
        self.assertExitsCounted(r, pids, app)

    def test_master_stops_its_worker_first(self):
        """SIGTERM goes to the command, not to its worker at the same time:
        the master has the worker close its connection before it exits, and
        both connections are released, none leaked at exit."""
        app = self.app()
        p = self.start(app, "relay", extra=["-d", "6"])
        pids = self.pids()
        r = self.finish(p)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stderr, "", r.describe())
        for who, pid in pids.items():
            self.assertFalse(alive(pid), "%s %d outlived connleak\n%s" % (who, pid, r.describe()))
            proc = find_process(r.snapshot, pid)
            self.assertIsNotNone(proc, who + "\n" + r.describe())
            self.assertEqual((proc["exited"], proc["acquired"], proc["released"], proc["active"],
                              proc["leaked_at_exit"]), (True, 1, 1, 0, 0), who + "\n" + r.describe())
        self.assertEqual(self.server.count_authorized(app, self.mark), 2)
        self.assertEqual(r.snapshot["tracking_stats"]["total_leaked_at_exit"], 0, r.describe())

    def test_sigkill_after_grace(self):
        """A worker that ignores SIGTERM is killed --kill-after seconds later."""
        app = self.app()
        p = self.start(app, "stubborn", extra=["-d", "8", "--kill-after", "1"])
        pids = self.pids()
        r = self.finish(p)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertFalse(alive(pids["worker"]), r.describe())
        self.assertEqual(r.stderr.strip(), "connleak: stopped %s (PID %d): 1 process still running 1 s after "
                         "SIGTERM, killed (--kill-after)" % (PYTHON, pids["master"]), r.describe())
        self.assertExitsCounted(r, pids, app)

    def test_keep_command(self):
        app = self.app()
        p = self.start(app, extra=["-d", "8", "--keep-command"])
        pids = self.pids()
        r = self.finish(p)
        self.assertEqual(r.returncode, 0, r.describe())
        for who, pid in pids.items():
            self.assertTrue(alive(pid), "%s %d was stopped\n%s" % (who, pid, r.describe()))
        self.assertEqual(r.stderr.strip(), "connleak: left %s running (--keep-command): PID %d, under it PID %d"
                         % (PYTHON, pids["master"], pids["worker"]), r.describe())
        for who, pid in pids.items():
            proc = find_process(r.snapshot, pid)
            self.assertEqual((proc["exited"], proc["active"]), (False, 1), r.describe())

    def test_command_that_ends_itself_keeps_its_status(self):
        r = self.launch([PYTHON, "-c", "import sys; sys.exit(3)"], extra=["-d", "30"])
        self.assertEqual(r.returncode, 3, r.describe())


if __name__ == "__main__":
    unittest.main()
