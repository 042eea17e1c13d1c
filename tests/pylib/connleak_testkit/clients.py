"""pqclient (tests/client), the libpq test client: its summary lines, and
the interactive mode driven line by line.

    c = Client.start(ci)                                 # pqclient interactive
    c.cmd("open 3")
"""

import re
import subprocess

from .paths import PQCLIENT
from .procs import end_process

_SUMMARY = re.compile(r"pqclient: mode=(\S+) pid=(\d+) acquired=(\d+) finished=(\d+) held=(\d+) "
                      r"bad=(\d+) pings=(\d+) resets=(\d+)")


def pqclient_summaries(text):
    """Every summary line pqclient printed, as dicts of ints (plus mode)."""
    out = []
    for m in _SUMMARY.finditer(text):
        d = dict(zip(("mode", "pid", "acquired", "finished", "held", "bad", "pings", "resets"), m.groups()))
        for k in d:
            if k != "mode":
                d[k] = int(d[k])
        out.append(d)
    return out


class Client:
    """pqclient in interactive (or hold) mode, driven line by line."""

    def __init__(self, popen, pid):
        self.popen = popen
        self.pid = pid
        self.lines = []

    @classmethod
    def start(cls, conninfo, mode="interactive", args=(), env=None):
        p = subprocess.Popen([PQCLIENT, mode, conninfo] + [str(a) for a in args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        line = p.stdout.readline()
        m = re.match(r"ready pid=(\d+)", line)
        if not m:
            p.kill()
            _, err = p.communicate()
            raise AssertionError("pqclient %s did not start: %r %s" % (mode, line, err))
        return cls(p, int(m.group(1)))

    def send(self, line):
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def cmd(self, line):
        """Sends a command, returns its reply; fails unless it starts with "ok"
        (or is the summary line)."""
        self.send(line)
        reply = self.popen.stdout.readline()
        while reply.startswith("pqclient: mode=fork-child"):  # a forked child's own summary
            self.lines.append(reply)
            reply = self.popen.stdout.readline()
        if not reply.startswith("ok") and not reply.startswith("pqclient:"):
            self.popen.kill()
            _, err = self.popen.communicate()
            raise AssertionError("pqclient: %r -> %r, stderr: %s" % (line, reply, err))
        self.lines.append(reply)
        return reply.strip()

    @staticmethod
    def conns(reply):
        """The handles listed in an "ok ..." reply, as ints."""
        m = re.search(r"conns=(\S*)", reply)
        return [int(x, 16) for x in m.group(1).split(",") if x] if m else []

    def exit(self, timeout=60):
        """Tells it to exit (held handles leak); returns its summary."""
        try:
            self.send("exit")
        except BrokenPipeError:
            pass
        out, err = self.popen.communicate(timeout=timeout)
        if self.popen.returncode != 0:
            raise AssertionError("pqclient exited %d: %s" % (self.popen.returncode, err))
        s = pqclient_summaries(out)
        return s[-1] if s else None

    def cleanup(self):
        end_process(self.popen)
