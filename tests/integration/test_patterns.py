"""Leak patterns and special APIs, launched under connleak --leak-after 0:
two call sites, threads, PQreset, failed connections, pings, fork, and the
exit status of the launched command."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.pgserver import free_port  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase  # noqa: E402
from connleak_testkit.clients import pqclient_summaries  # noqa: E402
from connleak_testkit.snapshot import dump, sites  # noqa: E402


def symbolized(site):
    """The function a site names, or None for the module+offset form."""
    if re.match(r"^pqclient\+0x", site):
        return None
    m = re.match(r"^([A-Za-z_][\w.]*)\+0x[0-9a-f]+", site)
    return m.group(1) if m else None


class PatternTest(ConnleakTestCase):

    def check_twosites(self, n1, n2, l1, l2):
        app = self.app()
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient("twosites", self.server.conninfo(app), n1, n2, l1, l2)
        ctx = r.describe()
        self.assertEqual((summ["acquired"], summ["finished"]), (n1 + n2, n1 + n2 - l1 - l2), ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), n1 + n2, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=n1 + n2, released=n1 + n2 - l1 - l2,
                          leaked_at_exit=l1 + l2)
        ss = self.assertSites(proc, [dict(acquired=n1, released=n1 - l1, leaked_at_exit=l1),
                                     dict(acquired=n2, released=n2 - l2, leaked_at_exit=l2)], ctx)
        self.assertEqual(len(ss), 2, ctx)
        for name, s in ss.items():
            self.assertIn("pqclient", name, ctx)
            func = symbolized(name)
            if func is not None:  # a named site must name the right function
                want = "site_a" if s["acquired"] == n1 else "site_b"
                self.assertEqual(func, want, ctx)

    def test_two_sites_leaking(self):
        self.check_twosites(3, 5, 1, 2)

    def test_two_sites_finished(self):
        self.check_twosites(2, 4, 0, 0)

    def check_threads(self, t, n, leak):
        app = self.app()
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient("threads", self.server.conninfo(app), t, n, leak)
        ctx = r.describe()
        total, kept = t * n, t * leak
        self.assertEqual((summ["acquired"], summ["finished"]), (total, total - kept), ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), total, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=total, released=total - kept, leaked_at_exit=kept)
        self.assertSites(proc, [dict(acquired=total, released=total - kept, leaked_at_exit=kept)], ctx)

    def test_threads_leaking(self):
        self.check_threads(4, 5, 1)

    def test_threads_finished(self):
        self.check_threads(3, 4, 0)

    def test_reset(self):
        """PQreset x2 + PQresetStart: 3 resets of one handle, not acquisitions."""
        app = self.app()
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient("reset", self.server.conninfo(app))
        ctx = r.describe()
        self.assertEqual(summ["resets"], 3, ctx)
        # the server sees a new backend per reset: 1 + 3
        self.assertEqual(self.server.count_authorized(app, since=mark), 4, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=1, released=1, resets=3)
        self.assertSites(proc, [dict(acquired=1, released=1)], ctx)

    def check_fail(self, n, leak):
        app = self.app()
        ci = self.server.conninfo(app, port=free_port())  # nobody listens there
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient("fail", ci, n, leak)
        ctx = r.describe()
        self.assertEqual((summ["acquired"], summ["bad"], summ["finished"]), (n, n, n - leak), ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), 0, ctx)
        # a failed connection is still a PGconn that needs PQfinish
        self.assertCounts(proc, ctx, exited=True, acquired=n, released=n - leak, leaked_at_exit=leak)
        self.assertSites(proc, [dict(acquired=n, released=n - leak, leaked_at_exit=leak)], ctx)

    def test_failed_connection_finished(self):
        self.check_fail(1, 0)

    def test_failed_connection_leaked(self):
        self.check_fail(2, 1)

    def check_ping(self, mode, n):
        app = self.app(mode)
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient(mode, self.server.conninfo(app), n)
        ctx = r.describe()
        self.assertEqual(summ["pings"], n, ctx)
        # (with trust auth each ping completes a startup: the server logs it)
        self.assertEqual(self.server.count_authorized(app, since=mark), n, ctx)
        # libpq's ping makes and finishes a PGconn inside: none of it counts
        self.assertCounts(proc, ctx, exited=True, pings=n)
        self.assertEqual(proc["top_connection_users"], [], ctx)

    def test_ping(self):
        self.check_ping("ping", 3)

    def test_ping_params(self):
        self.check_ping("pingparams", 2)

    def test_fork(self):
        """A child forked by a traced process is traced as its own process."""
        app = self.app()
        mark = self.server.log_mark()
        r, summ, parent = self.launch_pqclient("fork", self.server.conninfo(app), 4, 1)
        ctx = r.describe()
        child_summ = [s for s in pqclient_summaries(r.stdout) if s["mode"] == "fork-child"]
        self.assertEqual(len(child_summ), 1, ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), 5, ctx)
        self.assertCounts(parent, ctx, exited=True, acquired=1, released=1)
        child = r.process(child_summ[0]["pid"])
        self.assertIsNotNone(child, "forked child %d not in the snapshot\n%s" % (child_summ[0]["pid"], ctx))
        self.assertCounts(child, ctx, exited=True, acquired=4, released=3, leaked_at_exit=1)
        self.assertSites(child, [dict(acquired=4, released=3, leaked_at_exit=1)], ctx)
        self.assertEqual(len(r.snapshot["processes"]), 2, ctx)

    def test_exit_status_of_command(self):
        """connleak -- CMD exits with CMD's exit status, after its final report."""
        app = self.app()
        r, summ, proc = self.launch_pqclient("exit", self.server.conninfo(app), 3, expect_rc=3)
        ctx = r.describe()
        self.assertCounts(proc, ctx, exited=True, acquired=1, released=1)

    def test_site_strings_distinct_per_function(self):
        """Sites of different APIs' functions in one binary never collide:
        twosites puts site_a and site_b apart even with equal counts."""
        app = self.app()
        r, _, proc = self.launch_pqclient("twosites", self.server.conninfo(app), 2, 2)
        ctx = r.describe()
        ss = sites(proc)
        self.assertEqual(len(ss), 2, ctx + "\n" + dump(proc))
        self.assertEqual(sorted(s["acquired"] for s in ss.values()), [2, 2], ctx)


if __name__ == "__main__":
    unittest.main()
