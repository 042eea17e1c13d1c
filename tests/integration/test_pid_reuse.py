"""A pid used again: a traced parent forks a child that holds a database
socket and exits, then (kernel.ns_last_pid set to make it so) a second child
with the same pid that connects again. The second is another process: its
socket is its own, never the first holder's final socket report."""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import PYTHON  # noqa: E402
from connleak_testkit.snapshot import dump, find_process  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402

# The parent: "fork" forks a child that connects over the server's Unix
# socket and prints its pid, then exits at "exit PID" without closing.
# "fork_at N" first sets ns_last_pid to N - 1 so the child gets pid N.
PARENT = r'''
import os, sys, psycopg2
dsn = sys.argv[1]
kids = {}
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    if words[0] in ("fork", "fork_at"):
        if words[0] == "fork_at":
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(int(words[1]) - 1))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            conn = psycopg2.connect(dsn)
            conn.cursor().execute("select 1")
            print("child %d" % os.getpid(), flush=True)
            os.read(r, 1)
            os._exit(0)  # the socket left open: the kernel closes it
        os.close(r)
        kids[pid] = w
    elif words[0] == "exit":
        pid = int(words[1])
        os.close(kids.pop(pid))
        os.waitpid(pid, 0)
        print("gone %d" % pid, flush=True)
'''


class PidReuseTest(ConnleakTestCase):
    def parent(self):
        dsn = "host=%s port=%d user=postgres dbname=postgres application_name=%s" % (
            self.server.socket_dir, self.server.port, self.app())
        p = subprocess.Popen([PYTHON, "-c", PARENT, dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, bufsize=1)
        self.addCleanup(lambda: (p.kill(), p.wait()))
        self.assertEqual(p.stdout.readline().strip(), "ready")
        return p

    @staticmethod
    def say(p, line, want):
        p.stdin.write(line + "\n")
        p.stdin.flush()
        got = p.stdout.readline().split()
        assert got and got[0] == want, (line, got)
        return int(got[1])

    def test_second_holder_of_a_pid_gets_its_own_socket_report(self):
        p = self.parent()
        t = Tracer.attach([p.pid], interval=0.2)
        self.addCleanup(t.cleanup)
        t.wait_attached()
        first = self.say(p, "fork", "child")
        snap = t.wait_snapshot(lambda s: (find_process(s, first) or {}).get("db_sockets") == 1, timeout=60)
        self.assertIsNotNone(snap, "the first child's socket never showed\n" + t.describe())
        self.say(p, "exit %d" % first, "gone")
        snap = t.wait_snapshot(lambda s: (find_process(s, first) or {}).get("exited"), timeout=60)
        self.assertIsNotNone(snap, "the first child's exit never showed\n" + t.describe())
        # The same pid again (another process of the machine may take it
        # first: tried a few times).
        for _ in range(20):
            second = self.say(p, "fork_at %d" % first, "child")
            if second == first:
                break
            self.say(p, "exit %d" % second, "gone")
            time.sleep(0.2)
        else:
            self.fail("pid %d was never given again" % first)

        def second_seen(s):
            proc = find_process(s, first)
            return proc is not None and not proc.get("exited") and proc["active"] == 1 and proc["db_sockets"] == 1
        snap = t.wait_snapshot(second_seen, timeout=30)
        proc = find_process(t.last or {}, first)
        self.assertIsNotNone(snap, "the second holder of pid %d: %s\n%s" % (first, dump(proc), t.describe()))
        self.assertEqual(find_process(snap, first)["connections"][0]["socket"], "open", dump(snap))
        self.say(p, "exit %d" % second, "gone")


if __name__ == "__main__":
    unittest.main()
