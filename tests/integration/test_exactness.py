"""Exactness under load (the small size of bench/'s exactness run).

pqstress (bench/pqstress.c) runs several processes of several threads, each
acquiring and finishing libpq connections through every connect API, holding
a fraction of them (leaks) and pinging now and then, against a Unix socket
directory where no server listens (every connect fails at once, and still
hands back a PGconn that needs PQfinish: an acquisition). connleak launches it
and must report exactly the counts pqstress keeps itself: while the processes
still hold their leaked handles, and after they exited. A second run with maps
deliberately too small must report dropped > 0 and not crash.

No PostgreSQL server needed. Env (set by ctest): CONNLEAK, BUILD_DIR
(pqstress is BUILD_DIR/bench/pqstress, built by bench/CMakeLists.txt).
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit import benchlib  # noqa: E402
from connleak_testkit.paths import BUILD_DIR, CONNLEAK  # noqa: E402


class ExactnessTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tools = benchlib.Tools(BUILD_DIR, connleak=CONNLEAK)
        missing = cls.tools.missing(("connleak", "pqstress"))
        if missing:
            raise AssertionError("not built: %s (pqstress comes from bench/CMakeLists.txt: "
                                 "add_subdirectory(bench) in the top CMakeLists.txt)" % ", ".join(missing))

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="connleak-exact-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def assertExact(self, res):
        bad = benchlib.failed_checks(res)
        if bad or not res.get("ok"):
            self.fail("connleak's counts differ from pqstress's own:\n%s\n--- run ---\n%s"
                      % (json.dumps(bad, indent=1), json.dumps(
                          {k: v for k, v in res.items() if k != "checks"}, indent=1, default=str)[:6000]))

    def test_exact_counts_under_load(self):
        # 4 processes x 4 threads, 200,000 lifecycles through the five
        # connect APIs in turn, 1 in 50 held until exit, a PQping every 100
        # (bench's run): 16 threads connecting in a loop on 2 cores, with a
        # burst of stack copies at each process's start. Both readers before
        # the drain thread dropped stacks here (140-210 and 2,200-5,000 per
        # process); 30,000 lifecycles over 12 threads dropped none on this
        # machine and 471 per process in CI.
        res = benchlib.run_exactness(self.tools, self.tmp, total=200000, procs=4, threads=4,
                                     leak_every=50, ping_every=100, api="mix", timeout=240)
        self.assertExact(res)
        self.assertEqual(res["client"]["acquired"], 200000)
        self.assertEqual(res["client"]["held"], 4 * 4 * (200000 // 16 // 50))

    def test_maps_too_small_report_dropped(self):
        # 64 live handles, 2 sites and 3 processes (the launcher and two of
        # its four children) fit; the rest must show up as dropped.
        res = benchlib.run_exactness(self.tools, self.tmp, total=6000, procs=4, threads=2,
                                     leak_every=20, ping_every=100, api="mix",
                                     max_conns=64, max_sites=2, max_procs=3, timeout=120)
        self.assertExact(res)
        self.assertGreater(res["connleak_final"]["total_dropped"], 0)
        self.assertEqual(res["traced_workers"], 2, "two of the four children fit in the process map")


if __name__ == "__main__":
    unittest.main(verbosity=2)
