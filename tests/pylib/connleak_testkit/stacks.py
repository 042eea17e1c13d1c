"""Helpers shared by test_stacks.py and test_notices.py: the stackclient
test program (tests/stackclient) driven line by line, and frame parsing."""

import os
import re
import subprocess

from .paths import BUILD_DIR
from .procs import end_process

STACKCLIENT = {v: os.path.join(BUILD_DIR, "tests", "stackclient_" + v) for v in ("nofp", "fp")}


def function(frame):
    """'acquire_a+0x9 (stackclient_nofp) repo.c:6' -> 'acquire_a'."""
    m = re.match(r"([^+ ]+)\+0x[0-9a-f]+ \(", frame)
    return m.group(1) if m else None


def module(frame):
    """'f+0x9 (mod) x.c:6' or, without a symbol, 'mod+0x1234' -> 'mod'."""
    m = re.search(r"\(([^)]*)\)", frame)
    if m:
        return m.group(1)
    m = re.match(r"(.+)\+0x[0-9a-f]+$", frame)
    return m.group(1) if m else None


class StackClient:
    """stackclient MODE CONNINFO NA NB KEEP_A KEEP_B, step by step."""

    def __init__(self, binary, mode, conninfo, na, nb, ka, kb):
        self.popen = subprocess.Popen([binary, mode, conninfo, str(na), str(nb), str(ka), str(kb)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        line = self.popen.stdout.readline()
        m = re.match(r"ready pid=(\d+)", line)
        if not m:
            self.cleanup()
            raise AssertionError("stackclient did not start: %r" % line)
        self.pid = int(m.group(1))

    def step(self, expect):
        """Lets it go on; returns its next line, which must start with expect."""
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        if not line.startswith(expect):
            self.cleanup()
            raise AssertionError("stackclient: expected %r, got %r: %s" % (expect, line, self.popen.stderr.read()))
        return line.strip()

    def exit(self):
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()
        self.popen.communicate(timeout=60)
        return self.popen.returncode

    def cleanup(self):
        end_process(self.popen)


def mark_line(path, name):
    """The line of PATH that carries the comment MARK:NAME (a test's way to
    name a source line that edits do not move)."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if "MARK:%s" % name in line:
                return i
    raise AssertionError("no MARK:%s in %s" % (name, path))
