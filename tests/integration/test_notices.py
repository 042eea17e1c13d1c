"""Leak notices, HikariCP style: exactly one notice per connection that
crosses --leak-after (process, thread, connection, age, acquiring stack, on
stderr and in the JSON's notices), none for connections finished before it,
and exactly one release notice when a reported one is finished later."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from connleak_run import ConnleakTestCase, Tracer, conn_value, find_process, proc_counts  # noqa: E402
from stack_helpers import STACKCLIENT, StackClient, function  # noqa: E402

WAIT = 60
LEAK_AFTER = 1
NA, NB, KA, KB = 3, 2, 2, 1


def notices(snap, kind):
    return [n for n in (snap or {}).get("notices", []) if n["kind"] == kind]


class NoticeTest(ConnleakTestCase):

    def test_leak_and_release_notices(self):
        c = StackClient(STACKCLIENT["nofp"], "direct", self.server.conninfo(self.app()), NA, NB, KA, KB)
        self.addCleanup(c.cleanup)
        t = Tracer.attach([c.pid], leak_after=LEAK_AFTER, json_path=self.json_path(), extra=["--stacks", "3"])
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
        # stderr: the same notices, once each, with at most --stacks frames.
        err = t.stderr
        leak_lines = re.findall(r"^connleak: leak: connection (0x[0-9a-f]+) of pid (\d+) .* on thread (\d+) held "
                                r"([0-9.]+)s \(leak-after 1s\), acquired at (\S+)", err, re.M)
        rel_lines = re.findall(r"^connleak: released: previously reported leaked connection (0x[0-9a-f]+) .* "
                               r"was finished after ([0-9.]+)s", err, re.M)
        self.assertEqual(sorted(int(x[0], 16) for x in leak_lines), held, err)
        self.assertEqual(sorted(int(x[0], 16) for x in rel_lines), held, err)
        for line in leak_lines:
            self.assertEqual((int(line[1]), int(line[2])), (c.pid, c.pid), err)
        blocks = re.findall(r"^connleak: leak:.*\n((?:    .*\n)*)", err, re.M)
        for b in blocks:
            lines = b.splitlines()
            self.assertEqual(len(lines), 4, "3 frames and '... more'\n" + err)
            self.assertRegex(lines[0], r"^    at acquire_[ab]\+0x", err)
            self.assertRegex(lines[3], r"^    \.\.\. \d+ more", err)

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
