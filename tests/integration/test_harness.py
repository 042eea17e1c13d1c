"""The test harness itself, without connleak: the throwaway server, every
pqclient mode, and the server-log counts the other tests cross-check against.
If this fails, the other integration tests' failures say nothing about the
tracer."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PQCLIENT, PYTHON  # noqa: E402
from connleak_testkit.pgserver import PG_BIN, PgServer, free_port  # noqa: E402
from connleak_testkit.clients import Client, pqclient_summaries  # noqa: E402


class HarnessTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        if not os.access(PQCLIENT, os.X_OK):
            raise AssertionError("pqclient not found at %s: build it first (make build)" % PQCLIENT)
        cls.server = PgServer().start()
        cls.addClassCleanup(cls.server.stop)

    def pqclient(self, mode, app, *args, rc=0, conninfo=None):
        ci = conninfo or self.server.conninfo(app)
        mark = self.server.log_mark()
        p = subprocess.run([PQCLIENT, mode, ci] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, rc, p.stderr)
        s = pqclient_summaries(p.stdout)
        if rc != 1:
            self.assertTrue(s, p.stdout)
        else:
            self.assertRegex(p.stderr, r"^pqclient: error: .*\n$")
        return s, self.server.count_authorized(app, since=mark)

    def summary(self, s, **want):
        got = {k: s[k] for k in want}
        self.assertEqual(got, want, s)

    def test_n_leak_modes(self):
        for mode in ("connectdb", "params", "start", "startparams", "setdblogin"):
            with self.subTest(mode=mode):
                app = "h_" + mode
                s, logged = self.pqclient(mode, app, 5, 2)
                self.summary(s[0], mode=mode, acquired=5, finished=3, held=2, bad=0, pings=0, resets=0)
                self.assertEqual(logged, 5)

    def test_twosites_threads_reset(self):
        s, logged = self.pqclient("twosites", "h_two", 2, 3, 1, 1)
        self.summary(s[0], acquired=5, finished=3, held=2)
        self.assertEqual(logged, 5)
        s, logged = self.pqclient("threads", "h_threads", 4, 5, 1)
        self.summary(s[0], acquired=20, finished=16, held=4)
        self.assertEqual(logged, 20)
        s, logged = self.pqclient("reset", "h_reset")
        self.summary(s[0], acquired=1, finished=1, held=0, resets=3)
        self.assertEqual(logged, 4)  # the first connection, then one per reset

    def test_fail(self):
        ci = self.server.conninfo("h_fail", port=free_port())
        s, logged = self.pqclient("fail", "h_fail", 2, 1, conninfo=ci)
        self.summary(s[0], acquired=2, finished=1, held=1, bad=2)
        self.assertEqual(logged, 0)
        # the client refuses a connection that should have failed but did not
        self.pqclient("fail", "h_fail2", 1, 0, rc=1)

    def test_ping_logs_authorized(self):
        # Empirical: with trust auth, PQping completes the startup, so the
        # server logs "connection authorized" once per ping.
        s, logged = self.pqclient("ping", "h_ping", 3)
        self.summary(s[0], acquired=0, finished=0, pings=3)
        self.assertEqual(logged, 3)
        s, logged = self.pqclient("pingparams", "h_pingp", 2)
        self.summary(s[0], pings=2)
        self.assertEqual(logged, 2)

    def test_pg_isready_logs_authorized(self):
        # Even as root (no such role) pg_isready's ping logs "connection
        # authorized", then FATAL: role "root" does not exist.
        mark = self.server.log_mark()
        env = self.server.env("h_isready")
        p = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.server.port)],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.server.count_authorized("h_isready", since=mark), 1)

    def test_fork_exit(self):
        s, logged = self.pqclient("fork", "h_fork", 3, 1)
        self.assertEqual([x["mode"] for x in s], ["fork-child", "fork"])
        self.summary(s[0], acquired=3, finished=2, held=1)
        self.summary(s[1], acquired=1, finished=1, held=0)
        self.assertNotEqual(s[0]["pid"], s[1]["pid"])
        self.assertEqual(logged, 4)
        s, logged = self.pqclient("exit", "h_exit", 3, rc=3)
        self.summary(s[0], acquired=1, finished=1)
        self.assertEqual(logged, 1)

    def test_interactive(self):
        app = "h_inter"
        c = Client.start(self.server.conninfo(app))
        self.addCleanup(c.cleanup)
        r = c.cmd("open 3")
        self.assertEqual(len(Client.conns(r)), 3)
        first = Client.conns(r)
        r = c.cmd("open 2")
        self.assertEqual(Client.conns(r)[:3], first)
        r = c.cmd("finish-old 2")
        self.assertEqual(Client.conns(r)[0], first[2])
        r = c.cmd("finish-new 1")
        self.assertEqual(len(Client.conns(r)), 2)
        c.cmd("ping 1")
        s = c.exit()
        self.assertEqual((s["acquired"], s["finished"], s["held"], s["pings"]), (5, 3, 2, 1))
        self.assertEqual(self.server.count_authorized(app), 6)  # 5 + the ping

    def test_hold(self):
        app = "h_hold"
        c = Client.start(self.server.conninfo(app), "hold", (4, 1))
        self.addCleanup(c.cleanup)
        self.assertEqual(self.server.count_authorized(app), 4)
        c.send("go")
        s = pqclient_summaries(c.popen.stdout.readline())
        self.assertEqual((s[0]["acquired"], s[0]["finished"], s[0]["held"]), (4, 3, 1))
        out, err = c.popen.communicate("\n", timeout=30)
        self.assertEqual(c.popen.returncode, 0, err)

    def test_psycopg2_script(self):
        app = "h_psycopg2"
        mark = self.server.log_mark()
        p = subprocess.run([PYTHON, "-c", PSYCOPG2_SCRIPT, self.server.conninfo(app)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.server.count_authorized(app, since=mark), 3)

    def test_pgbench_logs_its_connections(self):
        env = self.server.env()
        pgbench = os.path.join(PG_BIN, "pgbench")
        p = subprocess.run([pgbench, "-i", "-q", "-s", "1"], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        mark = self.server.log_mark()
        p = subprocess.run([pgbench, "-C", "-c", "2", "-j", "2", "-t", "20", "-S"], env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr)
        n = self.server.count_authorized("pgbench", since=mark)
        self.assertGreaterEqual(n, 40)
        self.assertLessEqual(n, 43)


# Connects 3 times, closes 2, and leaves without any finalizer finishing the
# third (os._exit: psycopg2's dealloc would otherwise PQfinish it).
PSYCOPG2_SCRIPT = """
import os, sys, psycopg2
conns = [psycopg2.connect(sys.argv[1]) for _ in range(3)]
for c in conns[:2]:
    c.close()
print("psycopg2: connected=3 closed=2", flush=True)
os._exit(0)
"""

if __name__ == "__main__":
    unittest.main()
