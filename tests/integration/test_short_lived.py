"""Short-lived processes: counted exactly at any interval and exit timing.

forker forks 1,000 children that each make and finish one connection and
exit at once, while connleak reports every 0.2 s. Children exit between
connleak's read of the process map and its check that they still exist;
each must be counted with its final counts, equal to the server's own
count of connections (log_connections). Older exited processes are folded
per comm; the totals and per-site counts must stay exact.

Env (set by ctest): CONNLEAK, BUILD_DIR (forker is BUILD_DIR/tests/forker).
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import BUILD_DIR  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase  # noqa: E402

FORKER = os.path.join(BUILD_DIR, "tests", "forker")
_SUMMARY = re.compile(r"forker pid=(\d+) children=(\d+) ok=(\d+)")


class ShortLivedTest(ConnleakTestCase):
    def run_forker(self, children, parallel, interval):
        self.assertTrue(os.access(FORKER, os.X_OK), "forker not built at " + FORKER)
        app = self.app()
        mark = self.server.log_mark()
        r = self.launch([FORKER, self.server.conninfo(app), str(children), str(parallel)],
                        interval=interval, leak_after=0)
        ctx = r.describe()[-6000:]
        self.assertEqual(r.returncode, 0, ctx)
        m = _SUMMARY.search(r.stdout)
        self.assertIsNotNone(m, ctx)
        self.assertEqual(int(m.group(3)), children, "every child connected\n" + ctx)
        self.check_snapshot(r.snapshot, ctx)
        return r, self.server.count_authorized(app, since=mark), ctx

    def test_thousand_children_at_short_interval(self):
        r, server_count, ctx = self.run_forker(1000, 8, 0.2)
        self.assertEqual(server_count, 1000, "the server's log_connections count\n" + ctx)
        st = r.snapshot["tracking_stats"]
        self.assertEqual((st["total_acquired"], st["total_released"], st["total_active"],
                          st["total_leaked_at_exit"], st["total_dropped"]),
                         (server_count, server_count, 0, 0, 0), ctx)
        # The forker itself (no connection) and 1,000 children, all exited:
        # the latest (about 100) listed one by one, the rest folded into one
        # row for their comm, with every count of their sites.
        listed = [p for p in r.snapshot["processes"] if p["acquired"]]
        self.assertTrue(all(p["exited"] and p["acquired"] == p["released"] == 1 for p in listed), ctx)
        self.assertGreaterEqual(len(listed), 99, ctx)
        folded = r.snapshot["exited_folded"]
        self.assertEqual(len(folded), 1, ctx)
        g = folded[0]
        self.assertEqual(g["comm"], "forker", ctx)
        self.assertEqual(g["processes"] + len(listed), 1000, ctx)
        self.assertEqual((g["acquired"], g["released"], g["leaked_at_exit"]),
                         (g["processes"], g["processes"], 0), ctx)
        # One site in the code; a child gone before its stack could be named
        # keeps the caller's address as its site (README, Limits).
        self.assertEqual((sum(s["acquired"] for s in g["sites"]), sum(s["released"] for s in g["sites"])),
                         (g["processes"], g["processes"]), ctx)
        self.assertTrue(any(s["site"].startswith("main+") for s in g["sites"]), ctx)

if __name__ == "__main__":
    unittest.main(verbosity=2)
