"""A short real run of the ASan+UBSan build (make test's build-asan/):

    connleak --json FILE --leak-after 0 -- pqclient connectdb CONNINFO 5 2

over TCP and over the Unix socket, so the uprobes, the socket hooks, the
/proc and sock_diag readers, the unwinder and the symbolizer all run once
under the sanitizers. Exit status 0, the JSON written, the counts exact
(pqclient's own and the server's log), and not one sanitizer report.

Only added to ctest in a -DCONNLEAK_SANITIZE=ON build (tests/CMakeLists.txt),
which sets CONNLEAK, PQCLIENT, BUILD_DIR and the sanitizer options."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "pylib"))

from connleak_testkit.tracer import ConnleakTestCase  # noqa: E402

# What each sanitizer prints when it finds something.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")


class SanitizedRunTest(ConnleakTestCase):

    def check_run(self, conninfo, app, n=5, leak=2):
        mark = self.server.log_mark()
        r, summ, proc = self.launch_pqclient("connectdb", conninfo, n, leak)
        ctx = r.describe()
        for m in SANITIZER_MARKS:
            self.assertNotIn(m, r.stderr, "sanitizer report\n" + ctx)
        self.assertEqual((summ["acquired"], summ["finished"], summ["held"]), (n, n - leak, leak), ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), n, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=n, released=n - leak, leaked_at_exit=leak)
        st = r.snapshot["tracking_stats"]
        self.assertEqual((st["total_acquired"], st["total_released"], st["total_active"], st["total_leaks"],
                          st["total_leaked_at_exit"]), (n, n - leak, 0, 0, leak), ctx)
        # The stack was unwound and named: the site is a pqclient function.
        self.assertEqual(len(proc["top_connection_users"]), 1, ctx)
        self.assertIn("pqclient", proc["top_connection_users"][0]["site"], ctx)

    def test_tcp(self):
        app = self.app("tcp")
        self.check_run(self.server.conninfo(app), app)

    def test_unix_socket(self):
        app = self.app("unix")
        self.check_run(self.server.conninfo(app, host=self.server.socket_dir), app)


if __name__ == "__main__":
    unittest.main(verbosity=2)
