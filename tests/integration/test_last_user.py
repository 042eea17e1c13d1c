"""Last users and idle times (bpf/sock_io.bpf.h): the stack of the send that
began a handle's latest unit of work, taken in the kernel, and the time
since its socket last moved a byte. One psycopg2 pool connection borrowed
by two functions in turn, and a C client whose two functions use one
handle; cross-checked against the server's pg_stat_activity."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PQCLIENT, PYTHON  # noqa: E402
from connleak_testkit.snapshot import connections_of, dump  # noqa: E402
from connleak_testkit.procs import bpf_links  # noqa: E402
from connleak_testkit.stacks import mark_line  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
APP = os.path.join(TESTS, "apps", "python", "pool_users.py")
CLIENT_SRC = os.path.join(TESTS, "client", "pqclient.c")
SLEEP_S = 1.0
# TCP receive times come from the socket's jiffy (icsk_ack.lrcvtime): up to
# one tick early at HZ=100.
JIFFY_MS = 10 + 1


def traffic_tracepoints(tracer_pid):
    """The send/recv tracepoints connleak has attached (its link fds)."""
    return {tp for kind, tp in bpf_links(tracer_pid) if kind == "raw_tracepoint"} & \
        {"sock_send_length", "sock_recv_length"}


def sock_ops_possible():
    """What connleak needs to take TCP through sock_ops (tracer_sock_io.cpp)."""
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    config = os.path.exists("/proc/config.gz") or os.path.exists("/boot/config-" + os.uname().release)
    return (major, minor) >= (6, 15) and config


def sock_ops_attached(tracer_pid):
    return any(kind == "cgroup" and what == "3" for kind, what in bpf_links(tracer_pid))  # BPF_CGROUP_SOCK_OPS


def py_site(function, mark):
    return "%s (%s:%d)" % (function, APP, mark_line(APP, mark))


def site_part(label):
    """The site frame of a label: labels of two stacks reaching the same site
    frame also name where they part ("main (app.py:58) → borrower_a (...)")."""
    return label.split(" \u2192 ")[-1] if label else label


class LastUserTest(ConnleakTestCase):
    def backend(self, pid):
        """pg_stat_activity's (state, query) of one backend."""
        out = self.server.psql("select state || '|' || query from pg_stat_activity where pid = %d" % pid).strip()
        self.assertIn("|", out, "no backend %d in pg_stat_activity" % pid)
        return tuple(out.split("|", 1))

    def backends_of(self, app):
        return int(self.server.psql("select count(*) from pg_stat_activity where application_name = '%s'" % app))

    def wait_use(self, t, pid, site, min_idle_ms=0.0):
        """The snapshot where the process's one live handle names `site` as
        its last user (and has been idle min_idle_ms): that connection."""
        def ok(s):
            c = connections_of(s, pid)
            return (len(c) == 1 and site_part(c[0]["last_used_site"]) == site and c[0]["idle_ms"] is not None
                    and c[0]["idle_ms"] >= min_idle_ms)
        snap = t.wait_snapshot(ok, timeout=60)
        c = connections_of(snap, pid)
        self.assertTrue(ok(snap), "want last user %r, idle >= %s ms: %s\n%s" % (site, min_idle_ms, dump(snap),
                                                                              t.describe()))
        return c[0]

    def test_pool_borrowers(self):
        app_name = "t_last_pool"
        dsn = self.server.conninfo(app_name)
        t = Tracer.launch(["env", "APP_DSN=" + dsn, PYTHON, APP], interval=0.2)
        self.addCleanup(t.cleanup)
        pid = int(t.wait_line(r"ready pid=(\d+)").group(1))

        # borrower_a, then borrower_b, on the pool's one connection.
        t.send("a")
        done = t.wait_line(r"done a backend=(\d+) t0=([\d.]+) t1=([\d.]+)")
        backend = int(done.group(1))
        a = self.wait_use(t, pid, py_site("borrower_a", "a"))
        self.assertEqual(a["last_used_site"], py_site("borrower_a", "a"))  # its only stack yet: the plain name
        self.assertIn(py_site("borrower_a", "a"), a["last_used_frames"], dump(a))
        # Made by the pool's constructor in the process's first moments: the
        # interpreter was found before that connect (Python frames, pooled).
        self.assertTrue(a["pooled"], dump(a))
        t.send("b")
        done = t.wait_line(r"done b backend=(\d+) t0=([\d.]+) t1=([\d.]+)")
        self.assertEqual(int(done.group(1)), backend, "the pool handed out another connection")
        t0_b = float(done.group(2))
        b = self.wait_use(t, pid, py_site("borrower_b", "b"))
        self.assertEqual(b["conn"], a["conn"])

        # Idle since the pool's ROLLBACK on return: at least the sleep, and
        # no more than since borrower_b began.
        time.sleep(SLEEP_S)
        b = self.wait_use(t, pid, py_site("borrower_b", "b"), min_idle_ms=SLEEP_S * 1000)
        read_at = time.monotonic()
        self.assertLessEqual(b["idle_ms"], (read_at - t0_b) * 1000 + 1, dump(b))
        # The server agrees: one backend for the app, idle, its last statement the pool's ROLLBACK.
        self.assertEqual(self.backends_of(app_name), 1)
        self.assertEqual(self.backend(backend), ("idle", "ROLLBACK"))

        # Borrowers microseconds apart: the second is the last user.
        t.send("ab")
        t.wait_line(r"done ab backend=")
        self.wait_use(t, pid, py_site("borrower_b", "b"))
        t.send("a")
        t.wait_line(r"done a backend=")
        self.wait_use(t, pid, py_site("borrower_a", "a"))
        t.send("ab")
        t.wait_line(r"done ab backend=")
        self.wait_use(t, pid, py_site("borrower_b", "b"))

        # Kept in a transaction: its borrower is the last user; the server says so too.
        t.send("hold")
        t.wait_line(r"done hold backend=")
        held = self.wait_use(t, pid, py_site("holder", "hold"))
        self.assertEqual(self.backend(backend), ("idle in transaction", "select 'held'"))
        self.assertEqual(held["conn"], a["conn"])
        t.send("exit")
        t.wait()

    def test_c_client(self):
        """Over TCP the sends come through sock_ops: the machine-wide send
        and receive tracepoints are never attached."""
        if not sock_ops_possible():
            self.skipTest("kernel before 6.15 or no kernel config to read CONFIG_HZ from: TCP uses the tracepoints")
        t, _ = self.run_c_client(self.server.conninfo("t_last_c"))
        self.assertEqual(traffic_tracepoints(t.popen.pid), set(), "TCP needs no tracepoint")
        self.assertTrue(sock_ops_attached(t.popen.pid), "no sock_ops link (on connleak's cgroup, the launched command's)")
        t.send("exit")
        t.wait()

    def test_c_client_unix(self):
        """Over a Unix socket the tracepoints are attached when the first
        libpq Unix socket appears (in time for its first query), and
        detached once no such socket is left."""
        ci = self.server.conninfo("t_last_c_unix", host=self.server.socket_dir)
        env = dict(os.environ, CONNLEAK_TRAFFIC_CHECK_MS="500")
        t, pid = self.run_c_client(ci, env=env, before_open=lambda t: self.assertEqual(
            traffic_tracepoints(t.popen.pid), set(), "attached before any Unix socket"))
        self.assertEqual(traffic_tracepoints(t.popen.pid), {"sock_send_length", "sock_recv_length"})
        t.send("finish-all")
        t.wait_line(r"ok finish")
        deadline = time.monotonic() + 60
        while traffic_tracepoints(t.popen.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(traffic_tracepoints(t.popen.pid), set(), "still attached with no Unix socket left")
        # And again for the next one, its first query named.
        t.send("open 1")
        t.wait_line(r"ok open held=1")
        t.send("query-a 0")
        t.wait_line(r"ok query backend=(\d+)")
        line_a = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_a")
        snap = t.wait_snapshot(lambda s: len(connections_of(s, pid)) == 1 and
                               (connections_of(s, pid)[0]["last_used_site"] or "").endswith(line_a), timeout=60)
        self.assertTrue((connections_of(snap, pid)[0]["last_used_site"] or "").endswith(line_a), dump(snap))
        self.assertEqual(traffic_tracepoints(t.popen.pid), {"sock_send_length", "sock_recv_length"})
        t.send("exit")
        t.wait()

    def test_many_uses_one_stack(self):
        """4,002 units of work on one handle, 4,000 of them from one stack:
        once the kernel can walk that stack it keeps the stack's id in the
        socket's entry and sends the stack once, not a copy per use. Copies
        go out only while userspace learns a stack's return addresses, so
        one use of each stack comes first and is named (named means learnt:
        the reader teaches the kernel as it unwinds); how many copies a
        tight loop sends before that depends on the machine's speed. The
        last user stays exact each time, as the server's last query says."""
        uses = 2000
        env = dict(os.environ, CONNLEAK_STACK_STATS="1")
        t = Tracer.launch([PQCLIENT, "interactive", self.server.conninfo("t_last_many")], interval=0.2, env=env)
        self.addCleanup(t.cleanup)
        pid = int(t.wait_line(r"ready pid=(\d+)").group(1))
        t.send("open 1")
        t.wait_line(r"ok open held=1")
        line_a = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_a")
        line_b = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_b")

        def last_user(fn, line, query):
            pattern = re.compile(r"%s\+0x[0-9a-f]+ \(pqclient\) %s$" % (fn, re.escape(line)))

            def ok(s):
                c = connections_of(s, pid)
                return len(c) == 1 and bool(pattern.match(c[0]["last_used_site"] or ""))
            snap = t.wait_snapshot(ok, timeout=60)
            self.assertTrue(ok(snap), "want %s at %s: %s\n%s" % (fn, line, dump(snap), t.describe()))
            c = connections_of(snap, pid)[0]
            own = [f for f in c["last_used_frames"] if "(pqclient)" in f]  # innermost first, under libpq
            self.assertEqual([f.split("+")[0] for f in own[:2]], [fn, "run_interactive" if fn == "query_site_a" else
                                                                  "interactive_query"], dump(c))
            self.assertEqual(own[-1].split("+")[0], "_start", dump(c))  # the whole stack
            self.assertEqual(self.backend(backend), ("idle", query))  # the server's last query is that user's
            return c

        # One use of each stack first, each named before the next: the only
        # copies this test allows.
        t.send("query-a-many 1 0")
        backend = int(t.wait_line(r"ok queries=1 backend=(\d+)").group(1))
        last_user("query_site_a", line_a, "select 'a'")
        t.send("query-b 0")
        t.wait_line(r"ok query backend=")
        last_user("query_site_b", line_b, "select 'b'")
        for _ in range(2):
            t.send("query-a-many %d 0" % uses)
            backend = int(t.wait_line(r"ok queries=%d backend=(\d+)" % uses).group(1))
            last_user("query_site_a", line_a, "select 'a'")
            t.send("query-b 0")
            t.wait_line(r"ok query backend=")
            last_user("query_site_b", line_b, "select 'b'")
        t.send("exit")
        t.wait()
        stats = re.search(r"connleak: last users: (\d+) copies, (\d+) stacks walked in the kernel", t.stderr)
        self.assertIsNotNone(stats, t.describe())
        copies, walked = int(stats.group(1)), int(stats.group(2))
        dropped = [p for p in t.last["processes"] if p["pid"] == pid][0]["dropped_stacks"]
        # Without the kernel's walk each of the 2 * (uses + 1) + 2 uses is a
        # copy, received or dropped; with it, only the two first uses.
        self.assertLessEqual(copies + dropped, 2, t.describe())
        self.assertGreaterEqual(walked, 1, t.describe())

    def run_c_client(self, ci, env=None, before_open=None):
        t = Tracer.launch([PQCLIENT, "interactive", ci], interval=0.2, env=env)
        self.addCleanup(t.cleanup)
        pid = int(t.wait_line(r"ready pid=(\d+)").group(1))
        if before_open:
            before_open(t)
        t.send("open 1")
        t.wait_line(r"ok open held=1")
        line_a = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_a")
        line_b = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_b")

        def named(fn, line):
            def ok(s):
                c = connections_of(s, pid)
                return len(c) == 1 and c[0]["last_used_site"] is not None and \
                    c[0]["last_used_site"].startswith(fn + "+") and c[0]["last_used_site"].endswith(line)
            snap = t.wait_snapshot(ok, timeout=60)
            self.assertTrue(ok(snap), "want %s at %s: %s\n%s" % (fn, line, dump(snap), t.describe()))
            return connections_of(snap, pid)[0]

        # No query yet: idle since the connect, nobody used it.
        snap = t.wait_snapshot(lambda s: len(connections_of(s, pid)) == 1, timeout=60)
        c = connections_of(snap, pid)[0]
        self.assertIsNone(c["last_used_site"], dump(c))
        self.assertIsNotNone(c["idle_ms"], dump(c))

        t.send("query-a 0")
        m = t.wait_line(r"ok query backend=(\d+) t0=([\d.]+) t1=([\d.]+)")
        backend = int(m.group(1))
        named("query_site_a", line_a)
        t.send("query-b 0")
        m = t.wait_line(r"ok query backend=(\d+) t0=([\d.]+) t1=([\d.]+)")
        t0_b, t1_b = float(m.group(2)), float(m.group(3))
        time.sleep(SLEEP_S)
        b = named("query_site_b", line_b)
        t.wait_snapshot(lambda s: (connections_of(s, pid) or [{}])[0].get("idle_ms", 0) >= SLEEP_S * 1000, timeout=60)
        b = connections_of(t.last, pid)[0]
        # Idle since the answer came (t1), not since the query went (t0).
        self.assertGreaterEqual(b["idle_ms"], SLEEP_S * 1000, dump(b))
        self.assertLessEqual(b["idle_ms"], (time.monotonic() - t1_b) * 1000 + JIFFY_MS, dump(b))
        self.assertLessEqual(t1_b - t0_b, 1.0)
        self.assertEqual(self.backend(backend), ("idle", "select 'b'"))
        # A query whose answer comes 1.5 s after its send: idle counts from
        # the answer (a receive time kept from the send alone would be 1.5 s more).
        t.send("query-sleep 0")
        m = t.wait_line(r"ok query backend=(\d+) t0=([\d.]+) t1=([\d.]+)")
        t0_s, t1_s = float(m.group(2)), float(m.group(3))
        self.assertGreaterEqual(t1_s - t0_s, 1.5)
        # Wait for 2 s of idle: from the answer that is t1 + 2 s; from the
        # send it would show at t1 + 0.5 s (and no snapshot made during the
        # query can show 2 s).
        line_s = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_sleep")
        snap = t.wait_snapshot(lambda s: len(connections_of(s, pid)) == 1 and
                               (connections_of(s, pid)[0]["last_used_site"] or "").endswith(line_s) and
                               (connections_of(s, pid)[0]["idle_ms"] or 0) >= 2000, timeout=60)
        seen = time.monotonic()
        s = connections_of(snap, pid)[0]
        self.assertTrue(s["last_used_site"].startswith("query_site_sleep+"), dump(s))
        self.assertGreaterEqual(s["idle_ms"], 2000, dump(s))
        self.assertLessEqual(s["idle_ms"], (seen - t1_s) * 1000 + JIFFY_MS, dump(s))
        return t, pid


if __name__ == "__main__":
    unittest.main()
