"""connleak's failures: exit 1 for runtime failures, 2 for usage errors, one
diagnostic line on stderr, no JSON file left behind, the target unharmed."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from connleak_run import CONNLEAK, Client, ConnleakTestCase, Run, kill_quietly, run_connleak  # noqa: E402


def unused_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    return pid


class ErrorTest(ConnleakTestCase):

    def target(self):
        """A live libpq process (pqclient interactive, one connection open)."""
        c = Client.start(self.server.conninfo(self.app("target")))
        self.addCleanup(c.cleanup)
        c.cmd("open 1")
        return c

    def assertFails(self, r, rc, pattern=None):
        ctx = r.describe()
        self.assertEqual(r.returncode, rc, ctx)
        err = r.stderr.strip()
        self.assertTrue(err, "no diagnostic on stderr\n" + ctx)
        self.assertNotIn("\n", err, "diagnostic must be one line\n" + ctx)
        if pattern:
            self.assertRegex(err, pattern, ctx)

    def assertNoJson(self, path, r):
        self.assertFalse(os.path.exists(path), "JSON written despite the failure\n" + r.describe())
        d = os.path.dirname(path)
        leftovers = os.listdir(d) if os.path.isdir(d) else []
        self.assertEqual(leftovers, [], "files left behind\n" + r.describe())

    # ---- runtime failures: exit 1 ----

    def test_unknown_pid(self):
        pid = unused_pid()
        path = self.json_path()
        r = run_connleak(["-p", str(pid), "--json", path, "-i", "0.5"])
        self.assertFails(r, 1, str(pid))
        self.assertNoJson(path, r)

    def test_process_without_libpq(self):
        sleep = subprocess.Popen(["sleep", "60"])
        self.addCleanup(kill_quietly, sleep)
        path = self.json_path()
        r = run_connleak(["-p", str(sleep.pid), "--json", path, "-i", "0.5"])
        self.assertFails(r, 1, r"(?i)libpq")
        self.assertNoJson(path, r)
        self.assertIsNone(sleep.poll(), "the target must not be harmed")

    def check_unwritable_json(self, path):
        c = self.target()
        r = run_connleak(["-p", str(c.pid), "--json", path, "-i", "0.5", "-d", "3"])
        self.assertFails(r, 1)
        self.assertFalse(os.path.exists(path), r.describe())
        c.cmd("open 1")  # the target carries on
        c.exit()
        return r

    def test_json_in_proc(self):
        self.check_unwritable_json("/proc/connleak-test.json")

    def test_json_in_missing_dir(self):
        d = os.path.join(self.tmp, "no-such-dir")
        self.check_unwritable_json(os.path.join(d, "x.json"))
        self.assertFalse(os.path.exists(d))

    def test_missing_libpq_path(self):
        c = self.target()
        path = self.json_path()
        r = run_connleak(["-p", str(c.pid), "--libpq", "/nonexistent/libpq.so.5", "--json", path, "-i", "0.5"])
        self.assertFails(r, 1, r"/nonexistent/libpq\.so\.5")
        self.assertNoJson(path, r)
        c.exit()

    def test_not_root(self):
        """Run as nobody (a copy of the binary nobody can execute)."""
        c = self.target()
        d = tempfile.mkdtemp(prefix="connleak-nobody-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        exe = os.path.join(d, "connleak")
        shutil.copy2(CONNLEAK, exe)
        os.chmod(exe, 0o755)
        args = ["runuser", "-u", "nobody", "--", exe, "-p", str(c.pid), "-i", "0.5", "-d", "3"]
        p = subprocess.run(args, cwd=d, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        r = Run(args, p.returncode, p.stdout, p.stderr, None)
        self.assertFails(r, 1, r"(?i)(root|privilege|permission|CAP_|capabilit)")
        c.exit()

    # ---- usage errors: exit 2 ----

    def check_usage(self, args):
        path = self.json_path()
        r = run_connleak(list(args) + ["--json", path])
        self.assertFails(r, 2)
        self.assertNoJson(path, r)

    def test_usage_errors(self):
        c = self.target()
        pid = str(c.pid)
        cases = {
            "unknown flag": ["--no-such-flag", "-p", pid],
            "no target": ["-i", "1"],
            "negative interval": ["--interval", "-1", "-p", pid],
            "interval not a number": ["--interval", "abc", "-p", pid],
            "negative leak-after": ["--leak-after", "-1", "-p", pid],
            "negative duration": ["--duration", "-1", "-p", pid],
            "pid not a number": ["-p", "abc"],
        }
        for name, args in cases.items():
            with self.subTest(name):
                self.check_usage(args)
        c.cmd("open 1")
        c.exit()


if __name__ == "__main__":
    unittest.main()
