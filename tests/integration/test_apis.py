"""Every libpq connect API, launched under connleak:

    connleak --json FILE --leak-after 0 -- pqclient MODE CONNINFO N LEAK

Exact counts, cross-checked with pqclient's own summary and with the
connections the server logged for the test's application_name."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PQCLIENT  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402
from connleak_testkit.clients import pqclient_summaries  # noqa: E402
from connleak_testkit.snapshot import counts, find_process, json_lines, proc_counts  # noqa: E402

LIBPQ = os.path.realpath("/usr/lib/x86_64-linux-gnu/libpq.so.5")

# mode -> the pqclient function whose call is the acquiring site
API_MODES = {
    "connectdb": "run_connectdb",        # PQconnectdb
    "params": "run_params",              # PQconnectdbParams
    "start": "run_start",                # PQconnectStart + PQconnectPoll
    "startparams": "run_startparams",    # PQconnectStartParams + PQconnectPoll
    "setdblogin": "run_setdblogin",      # PQsetdbLogin
}


class ApiTest(ConnleakTestCase):

    def assertSiteName(self, site, func, ctx=""):
        """Both accepted forms name pqclient; a symbolized one names func."""
        self.assertIn("pqclient", site, ctx)
        if not re.match(r"^pqclient\+0x[0-9a-f]+", site):
            self.assertRegex(site, r"^%s\+0x[0-9a-f]+" % re.escape(func), ctx)

    def check_api(self, mode, n, leak):
        app = self.app(mode)
        ci = self.server.conninfo(app)
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient(mode, ci, n, leak)
        ctx = r.describe()
        # pqclient did what it was told
        self.assertEqual((summ["acquired"], summ["finished"], summ["held"]), (n, n - leak, leak), ctx)
        # the server saw exactly N connections of this test
        self.assertEqual(self.server.count_authorized(app, since=mark), n, ctx)
        # connleak counted them
        self.assertEqual(len(r.snapshot["processes"]), 1, ctx)
        self.assertEqual(r.snapshot["leak_after_s"], 0, ctx)
        self.assertEqual(proc["comm"], "pqclient", ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=n, released=n - leak, leaked_at_exit=leak)
        ss = self.assertSites(proc, [dict(acquired=n, released=n - leak, leaked_at_exit=leak)], ctx)
        self.assertSiteName(next(iter(ss)), API_MODES[mode], ctx)
        st = r.snapshot["tracking_stats"]
        self.assertEqual((st["total_acquired"], st["total_released"], st["total_active"], st["total_leaks"],
                          st["total_leaked_at_exit"]), (n, n - leak, 0, 0, leak), ctx)

    def test_leaking(self):
        for mode in API_MODES:
            with self.subTest(mode=mode):
                self.check_api(mode, 5, 2)

    def test_all_finished(self):
        for mode in API_MODES:
            with self.subTest(mode=mode):
                self.check_api(mode, 3, 0)

    def test_all_leaked(self):
        for mode in API_MODES:
            with self.subTest(mode=mode):
                self.check_api(mode, 2, 2)

    def test_json_lines_on_stdout(self):
        """--json - : one snapshot per line on stdout, the last one final."""
        app = self.app()
        r = self.launch([PQCLIENT, "connectdb", self.server.conninfo(app), "4", "1"], json_path="-")
        ctx = r.describe()
        self.assertEqual(r.returncode, 0, ctx)
        self.assertTrue(r.snapshots, "no JSON line on stdout\n" + ctx)
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                self.assertNotIn("\n", line)
        for s in r.snapshots:
            self.check_snapshot(s, ctx)
        pid = pqclient_summaries(r.stdout)[0]["pid"]
        self.assertCounts(r.process(pid), ctx, exited=True, acquired=4, released=3, leaked_at_exit=1)
        # counters never go backwards from one snapshot to the next
        prev = None
        for s in json_lines(r.stdout):
            st = s["tracking_stats"]
            if prev:
                self.assertGreaterEqual(st["total_acquired"], prev["total_acquired"], ctx)
                self.assertGreaterEqual(st["total_released"], prev["total_released"], ctx)
            prev = st

    def test_live_handles_while_command_runs(self):
        """connleak -- pqclient hold 3 1: the live handles are reported while
        the command runs (its stdin is connleak's, a pipe the test drives)."""
        app = self.app()
        t = Tracer.launch([PQCLIENT, "hold", self.server.conninfo(app), 3, 1], leak_after=0,
                          json_path=self.json_path())
        self.addCleanup(t.cleanup)
        pid = int(t.wait_line(r"^ready pid=(\d+)").group(1))
        _, proc = self.await_counts(t, pid, counts(False, acquired=3, active=3, leaks=3))
        self.check_live_connections(proc, pid, None, True, t.describe())
        self.assertSites(proc, [dict(acquired=3, active=3, leaks=3)], t.describe())
        t.send("go")  # finishes the 2 oldest
        t.wait_line(r"^pqclient: mode=hold .*acquired=3 finished=2")
        self.await_counts(t, pid, counts(False, acquired=3, released=2, active=1, leaks=1))
        t.send("bye")
        final = self.finish_tracer(t)
        self.assertEqual(self.server.count_authorized(app), 3, t.describe())
        self.assertEqual(proc_counts(find_process(final, pid)),
                         counts(True, acquired=3, released=2, leaked_at_exit=1), t.describe())

    def test_explicit_libpq(self):
        """--libpq PATH: the library named is probed (here the one pqclient maps)."""
        app = self.app()
        r, _, proc = self.launch_pqclient("connectdb", self.server.conninfo(app), 3, 1, extra=["--libpq", LIBPQ])
        self.assertCounts(proc, r.describe(), exited=True, acquired=3, released=2, leaked_at_exit=1)

    def test_snapshot_header(self):
        app = self.app()
        r, _, _ = self.launch_pqclient("connectdb", self.server.conninfo(app), 1, 0, leak_after=7)
        self.assertEqual(r.snapshot["leak_after_s"], 7, r.describe())
        self.assertRegex(r.snapshot["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


if __name__ == "__main__":
    unittest.main()
