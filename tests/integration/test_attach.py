"""Attach by PID: `connleak -p PID` on a running pqclient (interactive or hold
mode) that holds connections made before the attach (never acquired; their
PQfinish is released_untracked), then opens, finishes and leaks more.

Handshakes, no timing guesses: pqclient answers each command once done;
connleak is attached once its first snapshot exists; expected numbers are
awaited in the JSON (generous timeout), then asserted exactly."""

import os
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PQCLIENT  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402
from connleak_testkit.clients import Client, pqclient_summaries  # noqa: E402
from connleak_testkit.snapshot import counts, dump, find_process, proc_counts  # noqa: E402
from connleak_testkit.procs import code_byte, private_libpq  # noqa: E402

WAIT = 60  # seconds to wait for an expected snapshot


class AttachTest(ConnleakTestCase):

    def client(self, app, mode="interactive", args=(), env=None):
        c = Client.start(self.server.conninfo(app), mode, args, env=env)
        self.addCleanup(c.cleanup)
        return c

    def attach(self, pids, **kw):
        t = Tracer.attach(pids, json_path=self.json_path(), **kw)
        self.addCleanup(t.cleanup)
        snap = t.wait_attached(timeout=WAIT)
        self.assertIsNotNone(snap, "connleak wrote no snapshot after attaching\n" + t.describe())
        if not t.alive():
            t.wait(30)
            self.fail("connleak exited right after attaching\n" + t.describe())
        self.check_snapshot(snap, t.describe())
        return t

    def run_scenario(self, leak_after, leaks_when_live):
        """3 handles before attach; after: open 4, finish 2 old + 1 new."""
        app = self.app()
        c = self.client(app)
        c.cmd("open 3")
        t = self.attach([c.pid], leak_after=leak_after)
        first = find_process(t.last, c.pid)
        self.assertIsNotNone(first, "attached pid %d not listed\n%s" % (c.pid, t.describe()))
        self.assertEqual(proc_counts(first), counts(False), t.describe())
        self.assertEqual(first["comm"], "pqclient", t.describe())
        self.assertEqual(t.last["leak_after_s"], leak_after, t.describe())

        new = Client.conns(c.cmd("open 4"))[3:]
        c.cmd("finish-old 2")  # two made before attach: released_untracked
        c.cmd("finish-new 1")  # one made after: released
        live = new[:3]
        snap, proc = self.await_counts(t, c.pid, counts(False, acquired=4, released=1, released_untracked=2,
                                                        active=3, leaks=3 if leaks_when_live else 0))
        ctx = t.describe()
        self.check_live_connections(proc, c.pid, live, leaks_when_live, ctx)
        self.assertSites(proc, [dict(acquired=4, released=1, active=3, leaks=3 if leaks_when_live else 0)], ctx)
        self.assertEqual(self.server.count_authorized(app), 7, ctx)

        s = c.exit()  # 4 held handles leak: 3 tracked, 1 from before attach
        self.assertEqual((s["acquired"], s["finished"], s["held"]), (7, 3, 4))
        final = self.finish_tracer(t)  # connleak stops by itself: its only target exited
        proc = find_process(final, c.pid)
        ctx = t.describe()
        self.assertEqual(proc_counts(proc), counts(True, acquired=4, released=1, released_untracked=2,
                                                   leaked_at_exit=3), ctx)
        self.assertSites(proc, [dict(acquired=4, released=1, leaked_at_exit=3)], ctx)

    def test_leak_after_0(self):
        self.run_scenario(0, True)

    def test_leak_after_large(self):
        self.run_scenario(3600, False)

    def test_leaks_age_past_leak_after(self):
        """--leak-after 1: live handles become leaks once 1 s old."""
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=1)
        conns = Client.conns(c.cmd("open 2"))
        _, proc = self.await_counts(t, c.pid, counts(False, acquired=2, active=2, leaks=2))
        self.check_live_connections(proc, c.pid, conns, True, t.describe())
        for conn in proc["connections"]:
            self.assertGreaterEqual(conn["age_ms"], 1000, t.describe())
        c.cmd("finish-all")
        self.await_counts(t, c.pid, counts(False, acquired=2, released=2))
        c.exit()
        final = self.finish_tracer(t)
        self.assertEqual(proc_counts(find_process(final, c.pid)), counts(True, acquired=2, released=2),
                         t.describe())

    def test_hold_before_attach_only_untracked(self):
        """Everything opened before attach: finishing it is released_untracked,
        never acquired/active, and what is left at exit is not leaked_at_exit."""
        c = self.client(self.app(), "hold", (5, 2))
        t = self.attach([c.pid], leak_after=0)
        c.send("go")
        s = pqclient_summaries(c.popen.stdout.readline())
        self.assertEqual((s[0]["acquired"], s[0]["finished"], s[0]["held"]), (5, 3, 2))
        self.await_counts(t, c.pid, counts(False, released_untracked=3))
        c.send("bye")
        final = self.finish_tracer(t)
        proc = find_process(final, c.pid)
        self.assertEqual(proc_counts(proc), counts(True, released_untracked=3), t.describe())
        self.assertEqual(proc["top_connection_users"], [], t.describe())

    def test_ping_after_attach(self):
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=0)
        c.cmd("ping 2")
        self.await_counts(t, c.pid, counts(False, pings=2))
        c.exit()
        self.assertEqual(proc_counts(find_process(self.finish_tracer(t), c.pid)), counts(True, pings=2), t.describe())

    def test_two_pids(self):
        """-p A -p B: each its own entry; connleak runs until both exited."""
        a, b = self.client(self.app("a")), self.client(self.app("b"))
        t = self.attach([a.pid, b.pid], leak_after=0)
        a.cmd("open 2")
        a.cmd("finish-new 1")
        b.cmd("open 3")
        self.await_counts(t, a.pid, counts(False, acquired=2, released=1, active=1, leaks=1))
        self.await_counts(t, b.pid, counts(False, acquired=3, active=3, leaks=3))
        a.exit()
        self.await_counts(t, a.pid, counts(True, acquired=2, released=1, leaked_at_exit=1))
        self.assertTrue(t.alive(), "connleak stopped while pid %d still runs\n%s" % (b.pid, t.describe()))
        b.cmd("finish-old 1")
        b.exit()
        final = self.finish_tracer(t)
        ctx = t.describe()
        self.assertEqual(proc_counts(find_process(final, a.pid)),
                         counts(True, acquired=2, released=1, leaked_at_exit=1), ctx)
        self.assertEqual(proc_counts(find_process(final, b.pid)),
                         counts(True, acquired=3, released=1, leaked_at_exit=2), ctx)
        st = final["tracking_stats"]
        self.assertEqual((st["total_acquired"], st["total_released"], st["total_leaked_at_exit"]), (5, 2, 3), ctx)

    def test_untraced_process_ignored(self):
        """A libpq process not named with -p is not reported."""
        traced, other = self.client(self.app("traced")), self.client(self.app("other"))
        t = self.attach([traced.pid], leak_after=0)
        other.cmd("open 2")
        traced.cmd("open 1")
        other.cmd("finish-all")
        snap, _ = self.await_counts(t, traced.pid, counts(False, acquired=1, active=1, leaks=1))
        self.assertEqual([p["pid"] for p in snap["processes"]], [traced.pid], t.describe())
        other.exit()
        traced.exit()
        final = self.finish_tracer(t)
        self.assertEqual([p["pid"] for p in final["processes"]], [traced.pid], t.describe())

    def test_no_follow_probes_only_the_targets(self):
        """--no-follow: the breakpoints go into the targets only, so another
        libpq process on the host pays nothing; the counts stay exact. Both
        load a private copy of libpq: the probes of other connleaks running on
        the machine (on the system's libpq) must not show in `other`."""
        env = dict(os.environ, LD_LIBRARY_PATH=private_libpq(self.tmp))
        traced = self.client(self.app("traced"), env=env)
        other = self.client(self.app("other"), env=env)
        t = self.attach([traced.pid], leak_after=0, extra=["--no-follow"])
        self.assertEqual(code_byte(traced.pid, "PQconnectStart"), 0xcc, t.describe())
        self.assertNotEqual(code_byte(other.pid, "PQconnectStart"), 0xcc, t.describe())
        other.cmd("open 2")
        traced.cmd("open 3")
        traced.cmd("finish-new 1")
        self.await_counts(t, traced.pid, counts(False, acquired=3, released=1, active=2, leaks=2))
        reply = traced.cmd("fork 2 1")  # not followed: the child is not traced
        child = int(reply.split("child=")[1])
        other.exit()
        traced.exit()
        final = self.finish_tracer(t)
        ctx = t.describe()
        self.assertEqual([p["pid"] for p in final["processes"]], [traced.pid], ctx)
        self.assertEqual(proc_counts(find_process(final, traced.pid)),
                         counts(True, acquired=3, released=1, leaked_at_exit=2), ctx)
        self.assertIsNone(find_process(final, child), ctx)

    def test_following_probes_every_libpq_process(self):
        """By default the probes are on libpq's file for every process (so a
        child is traced from its first instruction): the filter is in BPF."""
        traced, other = self.client(self.app("traced")), self.client(self.app("other"))
        t = self.attach([traced.pid], leak_after=0)
        self.assertEqual(code_byte(traced.pid, "PQconnectStart"), 0xcc, t.describe())
        self.assertEqual(code_byte(other.pid, "PQconnectStart"), 0xcc, t.describe())
        other.exit()
        traced.exit()
        self.finish_tracer(t)

    def test_fork_after_attach(self):
        """A child forked by an attached process is traced too."""
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=0)
        c.cmd("open 1")
        reply = c.cmd("fork 3 1")  # the child: 3 connections, 1 leaked, exits
        child = int(reply.split("child=")[1])
        self.await_counts(t, child, counts(True, acquired=3, released=2, leaked_at_exit=1))
        self.await_counts(t, c.pid, counts(False, acquired=1, active=1, leaks=1))
        c.exit()
        final = self.finish_tracer(t)
        ctx = t.describe()
        self.assertEqual(proc_counts(find_process(final, child)),
                         counts(True, acquired=3, released=2, leaked_at_exit=1), ctx)
        self.assertEqual(proc_counts(find_process(final, c.pid)), counts(True, acquired=1, leaked_at_exit=1), ctx)

    def test_duration(self):
        """-d: connleak stops by itself (exit 0) while the target runs on."""
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=0, duration=5)
        c.cmd("open 1")
        self.await_counts(t, c.pid, counts(False, acquired=1, active=1, leaks=1))
        final = self.finish_tracer(t)
        self.assertIsNone(c.popen.poll(), "the target must outlive connleak")
        proc = find_process(final, c.pid)
        self.assertEqual(proc_counts(proc), counts(False, acquired=1, active=1, leaks=1), t.describe())
        c.exit()

    def check_signal(self, sig):
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=0)
        c.cmd("open 2")
        c.cmd("finish-old 1")
        self.await_counts(t, c.pid, counts(False, acquired=2, released=1, active=1, leaks=1))
        t.signal(sig)
        final = self.finish_tracer(t)  # final report, exit 0
        self.assertEqual(proc_counts(find_process(final, c.pid)),
                         counts(False, acquired=2, released=1, active=1, leaks=1), t.describe())
        self.assertIsNone(c.popen.poll(), "the target must survive connleak's exit")
        c.cmd("finish-all")  # the detached target keeps working
        c.exit()

    def test_sigterm(self):
        self.check_signal(signal.SIGTERM)

    def test_sigint(self):
        self.check_signal(signal.SIGINT)

    def test_json_replaced_each_interval(self):
        """The file is rewritten every interval, by replacing it (new inode)."""
        c = self.client(self.app())
        t = self.attach([c.pid], leak_after=0, interval=0.2)
        first = os.stat(t.json_path).st_ino
        replaced = t.wait_snapshot(lambda s: os.stat(t.json_path).st_ino != first, timeout=WAIT)
        self.assertNotEqual(os.stat(t.json_path).st_ino, first,
                            "JSON file not replaced within %ss\n%s" % (WAIT, t.describe() + dump(replaced)))
        c.exit()
        self.finish_tracer(t)

    def test_connect_in_flight_at_attach(self):
        """A connect under way when the probes go in has no return probe
        (uretprobes are armed at function entry), so its handle is like one
        made before attach: not acquired, its PQfinish released_untracked.
        A fake server accepts and stays silent to hold PQconnectdb open."""
        srv = socket.socket()
        self.addCleanup(srv.close)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        c = subprocess.Popen([PQCLIENT, "fail", "host=127.0.0.1 port=%d connect_timeout=60" % port, "1", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: c.poll() is None and c.kill())
        peer, _ = srv.accept()  # pqclient is now inside PQconnectdb
        t = self.attach([c.pid])
        peer.close()  # PQconnectdb returns a failed handle; pqclient finishes it and exits
        out, err = c.communicate(timeout=WAIT)
        self.assertEqual(pqclient_summaries(out)[-1]["finished"], 1, err)
        self.assertEqual(t.wait(), 0, t.describe())
        proc = find_process(t.last, c.pid)
        self.assertEqual(proc_counts(proc), counts(True, released_untracked=1), t.describe())


if __name__ == "__main__":
    unittest.main()
