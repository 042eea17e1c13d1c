"""Without --all the TCP sock_ops program sits on the traced processes'
cgroup v2 directories, not the root (tracer_sock_io.h, sock_ops_cgroups.h):
other services' TCP connections never run it. A traced process connecting
from a cgroup it is not attached over has its socket served by the
send/recv tracepoints from its first send (the kernel's check at the
connect, sockets.bpf.c). Both clients' last users and idle times are
cross-checked against pg_stat_activity."""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.clients import Client  # noqa: E402
from connleak_testkit.paths import PQCLIENT  # noqa: E402
from connleak_testkit.procs import bpf_link_infos, bpf_links  # noqa: E402
from connleak_testkit.snapshot import connections_of, dump  # noqa: E402
from connleak_testkit.stacks import mark_line  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer, connleak_args  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_SRC = os.path.join(os.path.dirname(HERE), "client", "pqclient.c")
SLEEP_S = 1.0
JIFFY_MS = 10 + 1  # TCP receive times through sock_ops: up to one tick early at HZ=100
TRAFFIC_TPS = {"sock_send_length", "sock_recv_length"}


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if post.split()[0] == "cgroup2" and fields[3] == "/":
                return fields[4]
    return None


def sock_ops_possible():
    """What connleak needs to take TCP through sock_ops (tracer_sock_io.cpp)."""
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    config = os.path.exists("/proc/config.gz") or os.path.exists("/boot/config-" + os.uname().release)
    return (major, minor) >= (6, 15) and config and cgroup2_mount() is not None


def sock_ops_cgroup_ids(tracer_pid):
    """The cgroup ids of the sock_ops links connleak holds (their fdinfo, as
    bpftool link show has them; this bpftool cannot name a link's owner)."""
    return sorted(int(info["cgroup_id"]) for info in bpf_link_infos(tracer_pid)
                  if info.get("link_type") == "cgroup"
                  and info.get("attach_type", "").strip() == "3")  # BPF_CGROUP_SOCK_OPS


def traffic_tracepoints(tracer_pid):
    return {tp for kind, tp in bpf_links(tracer_pid) if kind == "raw_tracepoint"} & TRAFFIC_TPS


class SockOpsCgroupTest(ConnleakTestCase):
    def make_cgroup(self, name):
        path = os.path.join(cgroup2_mount(), "connleak-test-%d-%s" % (os.getpid(), name))
        os.mkdir(path)
        self.addCleanup(os.rmdir, path)  # after the clients' cleanup (LIFO): empty by then
        return path

    def client_in(self, cgroup, ci):
        """pqclient interactive, moved into `cgroup` before it runs."""
        p = subprocess.Popen(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec "$2" interactive "$3"', "sh",
                              cgroup, PQCLIENT, ci], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
        line = p.stdout.readline()
        m = re.match(r"ready pid=(\d+)", line)
        if not m:
            p.kill()
            raise AssertionError("pqclient did not start: %r %s" % (line, p.communicate()[1]))
        c = Client(p, int(m.group(1)))
        self.addCleanup(self.end_client, c)
        return c

    @staticmethod
    def end_client(c):
        if c.popen.poll() is None:
            c.popen.kill()
        c.popen.wait()
        c.popen.stdout.close()
        c.popen.stderr.close()
        c.popen.stdin.close()

    def backend(self, pid):
        out = self.server.psql("select state || '|' || query from pg_stat_activity where pid = %d" % pid).strip()
        self.assertIn("|", out, "no backend %d in pg_stat_activity" % pid)
        return tuple(out.split("|", 1))

    def check_last_users(self, t, c, jiffy_ms):
        """The client's handle: its first query's site named (the first send
        seen), then the second's, idle since its answer."""
        c.cmd("open 1")
        line_a, line_b = "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_a"), "pqclient.c:%d" % mark_line(CLIENT_SRC, "query_b")

        def named(fn, line):
            def ok(s):
                cs = connections_of(s, c.pid)
                return len(cs) == 1 and (cs[0]["last_used_site"] or "").startswith(fn + "+") and \
                    cs[0]["last_used_site"].endswith(line)
            snap = t.wait_snapshot(ok, timeout=20)
            self.assertTrue(ok(snap), "want %s at %s: %s\n%s" % (fn, line, dump(connections_of(snap, c.pid)),
                                                                   t.describe()))

        c.cmd("query-a 0")
        named("query_site_a", line_a)
        reply = c.cmd("query-b 0")
        m = re.search(r"backend=(\d+) t0=([\d.]+) t1=([\d.]+)", reply)
        backend, t1 = int(m.group(1)), float(m.group(3))
        time.sleep(SLEEP_S)
        named("query_site_b", line_b)
        snap = t.wait_snapshot(lambda s: (connections_of(s, c.pid) or [{}])[0].get("idle_ms", 0) >= SLEEP_S * 1000,
                               timeout=20)
        seen = time.monotonic()
        b = connections_of(snap, c.pid)[0]
        self.assertGreaterEqual(b["idle_ms"], SLEEP_S * 1000, dump(b))
        self.assertLessEqual(b["idle_ms"], (seen - t1) * 1000 + jiffy_ms, dump(b))
        self.assertEqual(self.backend(backend), ("idle", "select 'b'"))

    def test_attached_to_the_traced_cgroup(self):
        if not sock_ops_possible():
            self.skipTest("kernel before 6.15, no kernel config to read CONFIG_HZ from, or no cgroup v2")
        covered, elsewhere = self.make_cgroup("a"), self.make_cgroup("b")
        ci = self.server.conninfo("t_sock_ops_cg")
        first = self.client_in(covered, ci)
        second = self.client_in(covered, ci)
        t = Tracer.attach([first.pid, second.pid], interval=0.2)
        self.addCleanup(t.cleanup)
        t.wait_attached()
        # One link, on their cgroup (its id: the directory's inode), not the root.
        self.assertEqual(sock_ops_cgroup_ids(t.popen.pid), [os.stat(covered).st_ino], t.describe())

        self.check_last_users(t, first, JIFFY_MS)
        self.assertEqual(traffic_tracepoints(t.popen.pid), set(), "the covered client needs no tracepoint")

        # The second moves where the program is not, then connects: the
        # tracepoints serve it from its first query (no periodic check runs
        # within the default 30 s).
        with open(os.path.join(elsewhere, "cgroup.procs"), "w") as f:
            f.write(str(second.pid))
        self.check_last_users(t, second, 1)
        self.assertEqual(traffic_tracepoints(t.popen.pid), TRAFFIC_TPS)
        self.assertEqual(sock_ops_cgroup_ids(t.popen.pid), [os.stat(covered).st_ino])
        self.assertEqual(int(self.server.psql(
            "select count(*) from pg_stat_activity where application_name = 't_sock_ops_cg'")), 2)
        first.exit()
        second.exit()

    def test_joined_later(self):
        """A followed child born in another cgroup than the launched command's
        gets the program over its cgroup at the next report, beside the
        command's own (connleak's)."""
        if not sock_ops_possible():
            self.skipTest("kernel before 6.15, no kernel config to read CONFIG_HZ from, or no cgroup v2")
        own, later = self.make_cgroup("own"), self.make_cgroup("later")
        ci = self.server.conninfo("t_sock_ops_later")
        json_path = self.json_path()
        # connleak in a cgroup of its own (so is the command it launches); the
        # command moves into `later` on a line, then starts the client there.
        command = ["sh", "-c", 'read go && echo $$ > "$1/cgroup.procs" && "$2" interactive "$3"', "sh", later,
                   PQCLIENT, ci]
        args = ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", own] + \
            connleak_args(0, 0.2, json_path, extra=["--"] + command)
        t = Tracer(args, json_path, subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE, text=True, bufsize=1))
        self.addCleanup(t.cleanup)
        t.wait_attached()
        self.assertEqual(sock_ops_cgroup_ids(t.popen.pid), [os.stat(own).st_ino], t.describe())
        t.send("go")
        pid = int(t.wait_line(r"ready pid=(\d+)").group(1))
        deadline = time.monotonic() + 20
        want = sorted([os.stat(own).st_ino, os.stat(later).st_ino])
        while sock_ops_cgroup_ids(t.popen.pid) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(sock_ops_cgroup_ids(t.popen.pid), want, t.describe())

        class Launched:  # the client's replies come through connleak's stdout
            def __init__(self, pid):
                self.pid = pid

            def cmd(self, line):
                t.send(line)
                return t.wait_line(r"^ok\b.*").group(0)

        self.check_last_users(t, Launched(pid), JIFFY_MS)
        self.assertEqual(traffic_tracepoints(t.popen.pid), set(), "its cgroup is covered: no tracepoint")
        t.send("exit")
        t.wait()

    def test_whole_host_on_the_root(self):
        """--all: one link, on the root, even with a traced process in a cgroup
        of its own (the root holds it: a second link would run twice)."""
        if not sock_ops_possible():
            self.skipTest("kernel before 6.15, no kernel config to read CONFIG_HZ from, or no cgroup v2")
        own = self.make_cgroup("all")
        c = self.client_in(own, self.server.conninfo("t_sock_ops_all"))
        json_path = self.json_path()
        args = connleak_args(0, 0.2, json_path, extra=["--all"])
        t = Tracer(args, json_path, subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE, text=True))
        self.addCleanup(t.cleanup)
        t.wait_snapshot(lambda s: any(p["pid"] == c.pid for p in s.get("processes", [])), timeout=60)
        c.cmd("open 1")
        t.wait_snapshot(lambda s: len(connections_of(s, c.pid)) == 1, timeout=60)
        self.assertEqual(sock_ops_cgroup_ids(t.popen.pid), [os.stat(cgroup2_mount()).st_ino], t.describe())
        self.assertEqual(traffic_tracepoints(t.popen.pid), set())
        c.exit()


if __name__ == "__main__":
    unittest.main()
