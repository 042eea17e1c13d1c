"""Real libpq programs launched under connleak --leak-after 0: pgbench,
pg_isready, psql (the binary, and Debian's /usr/bin/psql wrapper, a perl
script that execs it), and a psycopg2 script (libpq dlopened by python).
Counts are cross-checked with the connections the server logged."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PYTHON  # noqa: E402
from connleak_testkit.pgserver import PG_BIN  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase  # noqa: E402

# Connects 3 times, closes 2, and leaves without any finalizer finishing the
# third (os._exit: psycopg2's dealloc would otherwise PQfinish it at exit).
PSYCOPG2_SCRIPT = """
import os, sys, psycopg2
conns = [psycopg2.connect(sys.argv[1]) for _ in range(3)]
for c in conns[:2]:
    c.close()
print("psycopg2: connected=3 closed=2", flush=True)
os._exit(0)
"""


# What psycopg 3 does at import: ctypes.util.find_library runs ldconfig -p
# in a child, which never touches libpq.
HELPERS_SCRIPT = """
import ctypes.util, os, sys, psycopg2
assert ctypes.util.find_library("pq")
kept, closed = psycopg2.connect(sys.argv[1]), psycopg2.connect(sys.argv[1])
closed.close()
print("helpers: ldconfig done", flush=True)
os._exit(0)
"""


def report_blocks(text):
    """The text reports in connleak's stdout, one string each."""
    blocks = re.split(r"^(?=connleak \d{4}-)", text, flags=re.M)
    return [b for b in blocks if b.startswith("connleak ")]


class ToolsTest(ConnleakTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.psql("select 1")
        import subprocess
        p = subprocess.run([os.path.join(PG_BIN, "pgbench"), "-i", "-q", "-s", "1"], env=cls.server.env(),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise AssertionError("pgbench -i failed: %s" % p.stderr)

    def only_process(self, r, comm):
        ctx = r.describe()
        self.assertIsNotNone(r.snapshot, "no JSON snapshot\n" + ctx)
        self.check_snapshot(r.snapshot, ctx)
        self.assertEqual(len(r.snapshot["processes"]), 1, ctx)
        proc = r.snapshot["processes"][0]
        self.assertEqual(proc["comm"], comm, ctx)
        return proc, ctx

    def test_pgbench(self):
        mark = self.server.log_mark()
        r = self.launch([os.path.join(PG_BIN, "pgbench"), "-C", "-c", "2", "-j", "2", "-t", "20", "-S",
                         "-h", self.server.host, "-p", str(self.server.port), "-U", "postgres", "postgres"],
                        env=self.server.env())
        self.assertEqual(r.returncode, 0, r.describe())
        proc, ctx = self.only_process(r, "pgbench")
        logged = self.server.count_authorized("pgbench", since=mark)
        # 2 clients x 20 transactions, one connection each (-C), plus
        # pgbench's own setup connection(s): whatever the server saw
        self.assertGreaterEqual(logged, 40, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=logged, released=logged)
        self.assertEqual(sum(s["acquired"] for s in proc["top_connection_users"]), logged, ctx)

    def test_pg_isready(self):
        r = self.launch([os.path.join(PG_BIN, "pg_isready"), "-h", self.server.host, "-p", str(self.server.port)],
                        env=self.server.env())
        self.assertEqual(r.returncode, 0, r.describe())
        proc, ctx = self.only_process(r, "pg_isready")
        self.assertCounts(proc, ctx, exited=True, pings=1)

    def check_psql(self, psql, comm="psql"):
        app = self.app()
        mark = self.server.log_mark()
        r = self.launch([psql, "-X", "-A", "-t", "-c", "select 1", self.server.conninfo(app)],
                        env=self.server.env())
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIn("1", r.stdout.split(), r.describe())
        proc, ctx = self.only_process(r, comm)
        self.assertEqual(self.server.count_authorized(app, since=mark), 1, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=1, released=1)
        self.assertSites(proc, [dict(acquired=1, released=1)], ctx)

    def test_psql(self):
        self.check_psql(os.path.join(PG_BIN, "psql"))

    def test_psql_debian_wrapper(self):
        """What users type: /usr/bin/psql is a perl script exec'ing the binary."""
        self.check_psql("/usr/bin/psql")

    def test_psycopg2(self):
        app = self.app()
        mark = self.server.log_mark()
        r = self.launch([PYTHON, "-c", PSYCOPG2_SCRIPT, self.server.conninfo(app)])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIn("psycopg2: connected=3 closed=2", r.stdout, r.describe())
        proc, ctx = self.only_process(r, "python3")
        self.assertEqual(self.server.count_authorized(app, since=mark), 3, ctx)
        self.assertCounts(proc, ctx, exited=True, acquired=3, released=2, leaked_at_exit=1)
        self.assertSites(proc, [dict(acquired=3, released=2, leaked_at_exit=1)], ctx)

    def test_helper_processes_are_not_listed(self):
        """Issue #18: a library's short helpers (ldconfig under psycopg 3's
        find_library) are traced as children but never touch libpq: the text
        report leaves them out and names them in one line; the JSON keeps
        them."""
        app = self.app()
        mark = self.server.log_mark()
        r = self.launch([PYTHON, "-c", HELPERS_SCRIPT, self.server.conninfo(app)], interval=0.3)
        ctx = r.describe()
        self.assertEqual(r.returncode, 0, ctx)
        self.assertIn("helpers: ldconfig done", r.stdout, ctx)
        self.assertEqual(self.server.count_authorized(app, since=mark), 2, ctx)
        self.check_snapshot(r.snapshot, ctx)
        procs = {p["pid"]: p for p in r.snapshot["processes"]}
        python = [p for p in procs.values() if p["comm"] == "python3"]
        self.assertEqual(len(python), 1, ctx)
        self.assertCounts(python[0], ctx, exited=True, acquired=2, released=1, leaked_at_exit=1)
        quiet = [p for p in procs.values() if p["pid"] != python[0]["pid"]]
        self.assertIn("ldconfig", [p["comm"] for p in quiet], ctx)
        for p in quiet:
            self.assertCounts(p, ctx, exited=True)
            self.assertEqual(p["db_sockets"] + p["sockets"]["closed_at_exit"], 0, ctx)

        final = report_blocks(r.stdout)[-1]
        listed = sorted(int(pid) for pid in re.findall(r"^PID (\d+) ", final, re.M))
        self.assertEqual(listed, [python[0]["pid"]], final)
        names = ", ".join("%s (pid %d)" % (p["comm"], p["pid"]) for p in sorted(quiet, key=lambda p: p["pid"])[:3])
        if len(quiet) > 3:
            names += ", and %d more" % (len(quiet) - 3)
        self.assertIn("  not shown: %d exited process%s that made no libpq call and held no database socket: %s"
                      % (len(quiet), "" if len(quiet) == 1 else "es", names),
                      final.splitlines(), final)


if __name__ == "__main__":
    unittest.main()
