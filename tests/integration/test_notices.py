"""Leak notices, HikariCP style: exactly one notice per connection that
crosses --leak-after (process, thread, connection, age, acquiring stack, on
stderr and in the JSON's notices), none for connections finished before it,
and exactly one release notice when a reported one is finished later. On
stderr, by default, notices of one site in one interval fold into two lines
and a site's stack is printed once; --notice-stacks prints each in full."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402
from connleak_testkit.clients import Client  # noqa: E402
from connleak_testkit.snapshot import conn_value, find_process, proc_counts  # noqa: E402
from connleak_testkit.stacks import STACKCLIENT, StackClient, function  # noqa: E402

WAIT = 60
LEAK_AFTER = 1
NA, NB, KA, KB = 3, 2, 2, 1


def notices(snap, kind):
    return [n for n in (snap or {}).get("notices", []) if n["kind"] == kind]


class NoticeTest(ConnleakTestCase):

    def test_leak_and_release_notices(self):
        c = StackClient(STACKCLIENT["nofp"], "direct", self.server.conninfo(self.app()), NA, NB, KA, KB)
        self.addCleanup(c.cleanup)
        t = Tracer.attach([c.pid], leak_after=LEAK_AFTER, json_path=self.json_path(),
                          extra=["--stacks", "3", "--notice-stacks"])
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(WAIT), t.describe())
        c.step("done")

        snap = t.wait_snapshot(lambda s: len(notices(s, "leak")) >= KA + KB, WAIT)
        ctx = t.describe()
        proc = find_process(snap, c.pid)
        held = sorted(conn_value(x["conn"]) for x in proc["connections"])
        self.assertEqual(len(held), KA + KB, ctx)
        # Several more intervals: nothing is repeated.
        time.sleep(LEAK_AFTER + 1)
        snap = t.wait_snapshot(lambda s: True, WAIT)
        leaks = notices(snap, "leak")
        self.assertEqual(sorted(conn_value(n["conn"]) for n in leaks), held, ctx)
        self.assertEqual(notices(snap, "released"), [], ctx)
        for n in leaks:
            self.assertEqual((n["pid"], n["tid"]), (c.pid, c.pid), ctx)
            self.assertGreaterEqual(n["age_ms"], LEAK_AFTER * 1000, ctx)
            self.assertIn(function(n["site"]), ("acquire_a", "acquire_b"), ctx)
            self.assertEqual([function(f) for f in n["frames"][:4]],
                             [function(n["site"]), "repo" + n["site"][7:9], "service" + n["site"][7:9], "main"], ctx)
            self.assertRegex(n["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", ctx)
        self.assertEqual(sorted(function(n["site"]) for n in leaks), ["acquire_a"] * KA + ["acquire_b"] * KB, ctx)

        c.step("finished")
        snap = t.wait_snapshot(lambda s: len(notices(s, "released")) >= KA + KB, WAIT)
        time.sleep(1)
        snap = t.wait_snapshot(lambda s: True, WAIT)
        released = notices(snap, "released")
        self.assertEqual(sorted(conn_value(n["conn"]) for n in released), held, t.describe())
        for n in released:
            leak = next(x for x in leaks if x["conn"] == n["conn"])
            self.assertGreaterEqual(n["held_ms"], leak["age_ms"], t.describe())
            self.assertEqual(n["site"], leak["site"], t.describe())
        seqs = [n["seq"] for n in snap["notices"]]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), t.describe())
        self.assertEqual(len(seqs), 2 * (KA + KB), t.describe())

        self.assertEqual(c.exit(), 0)
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertEqual(proc_counts(find_process(t.last, c.pid))["released"], NA + NB, t.describe())
        # stderr (--notice-stacks): the same notices, once each, each leak
        # with its whole stack, whatever --stacks says.
        err = t.stderr
        leak_lines = re.findall(r"^connleak: leak: connection (0x[0-9a-f]+) of pid (\d+) .* on thread (\d+) held "
                                r"([0-9]+\.[0-9]) s \(leak-after 1s\), acquired at (\S+)", err, re.M)
        rel_lines = re.findall(r"^connleak: released: previously reported leaked connection (0x[0-9a-f]+) .* "
                               r"was finished after ([0-9]+\.[0-9]) s", err, re.M)
        self.assertEqual(sorted(int(x[0], 16) for x in leak_lines), held, err)
        self.assertEqual(sorted(int(x[0], 16) for x in rel_lines), held, err)
        for line in leak_lines:
            self.assertEqual((int(line[1]), int(line[2])), (c.pid, c.pid), err)
        blocks = re.findall(r"^connleak: leak: connection (0x[0-9a-f]+).*\n((?:    .*\n)*)", err, re.M)
        self.assertEqual(len(blocks), KA + KB, err)
        for conn, b in blocks:
            frames = next(n["frames"] for n in leaks if conn_value(n["conn"]) == int(conn, 16))
            self.assertGreater(len(frames), 3, err)
            self.assertEqual(b.splitlines(), ["    at " + f for f in frames], err)

    def test_ten_leaks_from_one_site_fold_into_a_few_lines(self):
        """Issue #18: 10 connections leaked from one site in one interval give
        one line, the site's stack (--stacks frames) and one "and 9 more"
        line on stderr, not 10 stacks; their release two lines. The JSON
        keeps 10 notices, each with every frame."""
        app = self.app()
        c = Client.start(self.server.conninfo(app))
        self.addCleanup(c.cleanup)
        interval, stacks = 4, 3
        t = Tracer.attach([c.pid], leak_after=1, interval=interval, json_path=self.json_path(),
                          extra=["--stacks", str(stacks)])
        self.addCleanup(t.cleanup)
        first = t.wait_attached(WAIT)
        self.assertIsNotNone(first, t.describe())
        # Right after a report: the 10 open well within one interval, and
        # are all older than --leak-after at the next report.
        t.wait_snapshot(lambda s: s["time"] != first["time"], WAIT)
        c.cmd("open 10")
        self.assertEqual(self.server.psql("select count(*) from pg_stat_activity where application_name = '%s'" % app),
                         "10")
        snap = t.wait_snapshot(lambda s: len(notices(s, "leak")) >= 10, WAIT)
        leaks = notices(snap, "leak")
        self.assertEqual(len(leaks), 10, t.describe())
        self.assertEqual(len({n["site"] for n in leaks}), 1, t.describe())
        self.assertEqual(len({n["time"] for n in leaks}), 1, "one interval\n" + t.describe())
        depth = len(leaks[0]["frames"])
        self.assertGreater(depth, stacks, "the JSON has the whole stack\n" + t.describe())

        before = snap["time"]
        t.wait_snapshot(lambda s: s["time"] != before, WAIT)
        c.cmd("finish-all")
        snap = t.wait_snapshot(lambda s: len(notices(s, "released")) >= 10, WAIT)
        self.assertEqual(len({n["time"] for n in notices(snap, "released")}), 1, t.describe())
        summary = c.exit()
        self.assertEqual((summary["acquired"], summary["finished"]), (10, 10), t.describe())
        self.assertEqual(t.wait(), 0, t.describe())

        err = t.stderr.splitlines()
        want = ["connleak: leak: connection",
                *["    at "] * stacks, "    ... %d more" % (depth - stacks),
                "connleak: leak: and 9 more connections of pid %d (pqclient) from the same site, held" % c.pid,
                "connleak: released: previously reported leaked connection",
                "connleak: released: and 9 more previously reported connections of pid %d (pqclient) from the same "
                "site, finished after" % c.pid]
        self.assertEqual(len(err), len(want), t.stderr)
        for line, start in zip(err, want):
            self.assertTrue(line.startswith(start), "%r should start with %r\n%s" % (line, start, t.stderr))

    def test_no_notice_below_threshold(self):
        """Connections finished before --leak-after give no notice at all."""
        c = StackClient(STACKCLIENT["nofp"], "direct", self.server.conninfo(self.app()), 2, 2, 1, 1)
        self.addCleanup(c.cleanup)
        t = Tracer.attach([c.pid], leak_after=30, json_path=self.json_path())
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(WAIT), t.describe())
        c.step("done")
        c.step("finished")
        self.assertEqual(c.exit(), 0)
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertEqual(t.last["notices"], [], t.describe())
        self.assertNotIn("connleak: leak:", t.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
