"""connleak's failures: exit 1 for runtime failures, 2 for usage errors, one
diagnostic line on stderr, no JSON file left behind, the target unharmed."""

import glob
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import CONNLEAK, REPO  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Run, kill_quietly, run_connleak  # noqa: E402
from connleak_testkit.clients import Client  # noqa: E402


def pid_max():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


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

    def test_database_server_pid_says_it_is_no_client(self):
        """-p of a PostgreSQL server process (a user naming the database that
        runs out of connections): said plainly, not "if it loads libpq later,
        name it with --libpq". A copy of sleep named postgres stands in."""
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        server = os.path.join(d, "postgres")
        shutil.copy("/bin/sleep", server)
        fake = subprocess.Popen([server, "60"])
        self.addCleanup(kill_quietly, fake)
        path = self.json_path()
        r = run_connleak(["-p", str(fake.pid), "--json", path, "-i", "0.5"])
        self.assertFails(r, 1, r"process %d \(postgres\) is a PostgreSQL server process, not a client: name the "
                               r"application's processes" % fake.pid)
        self.assertNotIn("--libpq", r.stderr, r.describe())
        self.assertNoJson(path, r)
        self.assertIsNone(fake.poll(), "the target must not be harmed")

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

    # ---- -j FILE replaces regular files only ----

    def check_json_refused(self, path, pattern):
        c = self.target()
        r = run_connleak(["-p", str(c.pid), "--json", path, "-i", "0.5", "-d", "2"])
        self.assertFails(r, 1, pattern)
        c.cmd("open 1")
        c.exit()
        return r

    def test_json_device_node_untouched(self):
        """-j on a device node (a /dev/null of our own: char 1,3) leaves it a
        device node: nothing is renamed over it."""
        node = os.path.join(self.tmp, "null")
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        r = self.check_json_refused(node, r"not a regular file")
        st = os.lstat(node)
        self.assertTrue(stat.S_ISCHR(st.st_mode), "the device node was replaced\n" + r.describe())
        self.assertEqual(st.st_rdev, os.makedev(1, 3), r.describe())
        self.assertEqual(os.listdir(self.tmp), ["null"], "files left behind\n" + r.describe())

    def test_json_fifo_untouched(self):
        fifo = os.path.join(self.tmp, "fifo")
        os.mkfifo(fifo)
        r = self.check_json_refused(fifo, r"not a regular file")
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode), r.describe())
        self.assertEqual(os.listdir(self.tmp), ["fifo"], r.describe())

    def test_json_symlink_refused(self):
        """A symbolic link is refused (connleak runs as root: a planted link
        must not redirect its writes), and left as it is, like its target."""
        real = os.path.join(self.tmp, "real.json")
        with open(real, "w") as f:
            f.write("keep\n")
        link = os.path.join(self.tmp, "snapshot.json")
        os.symlink("real.json", link)
        r = self.check_json_refused(link, r"symbolic link")
        self.assertTrue(os.path.islink(link), r.describe())
        with open(real) as f:
            self.assertEqual(f.read(), "keep\n", r.describe())
        self.assertEqual(sorted(os.listdir(self.tmp)), ["real.json", "snapshot.json"], r.describe())

    def run_json_ok(self, path, umask=None):
        c = self.target()

        def set_umask():
            if umask is not None:
                os.umask(umask)
        args = [CONNLEAK, "-q", "-p", str(c.pid), "--json", path, "-i", "0.5", "-d", "1"]
        p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                           preexec_fn=set_umask)
        r = Run(args, p.returncode, p.stdout, p.stderr, path)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIsNotNone(r.snapshot, r.describe())
        c.cmd("open 1")
        c.exit()
        return r

    def test_json_honours_umask(self):
        path = self.json_path()
        r = self.run_json_ok(path, umask=0o077)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, r.describe())
        r = self.run_json_ok(path, umask=0o002)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o664, r.describe())

    def test_json_name_of_name_max(self):
        """A name of NAME_MAX bytes works: the temporary beside it fits."""
        name_max = os.pathconf(self.tmp, "PC_NAME_MAX")
        path = os.path.join(self.tmp, "s" * (name_max - 5) + ".json")
        r = self.run_json_ok(path)
        self.assertEqual(os.listdir(self.tmp), [os.path.basename(path)], r.describe())

    # ---- --libpq must be libpq ----

    def check_bad_libpq(self, libpq, pattern, timeout=30):
        c = self.target()
        path = self.json_path()
        r = run_connleak(["-p", str(c.pid), "--libpq", libpq, "--json", path, "-i", "0.5", "-d", "2"],
                         timeout=timeout)
        self.assertFails(r, 1, pattern)
        self.assertNotIn("Unknown error", r.stderr, r.describe())
        self.assertNotIn("No such file", r.stderr, r.describe())
        self.assertFalse(os.path.exists(path), r.describe())
        c.cmd("open 1")
        c.exit()

    def test_libpq_fifo(self):
        """A FIFO as --libpq: one clear line at once, not a hang in open()."""
        fifo = os.path.join(self.tmp, "libpq.so.5")
        os.mkfifo(fifo)
        try:
            self.check_bad_libpq(fifo, r"--libpq .*libpq\.so\.5: not a regular file", timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("connleak hung on a FIFO as --libpq")

    def test_libpq_not_elf(self):
        text = os.path.join(self.tmp, "libpq.so.5")
        with open(text, "w") as f:
            f.write("not a shared library\n")
        self.check_bad_libpq(text, r"--libpq .*: not an ELF file")

    def test_libpq_elf_without_libpq(self):
        self.check_bad_libpq("/bin/true", r"--libpq /bin/true: not libpq: it defines no PQconnectStart, PQfinish")

    # ---- full maps and bounds ----

    def test_max_procs_full_names_the_option(self):
        a, b = self.target(), self.target()
        path = self.json_path()
        r = run_connleak(["-p", str(a.pid), "-p", str(b.pid), "--max-procs", "1", "--json", path, "-d", "2"])
        self.assertFails(r, 1, r"process map is full .*raise --max-procs")
        self.assertNoJson(path, r)
        for c in (a, b):
            c.cmd("open 1")
            c.exit()

    def test_map_bounds(self):
        """Sizes beyond the bounds are usage errors that say what they cost,
        at once (not gigabytes of kernel memory after seconds)."""
        c = self.target()
        for option in ("--max-conns", "--max-sites", "--max-procs"):
            with self.subTest(option):
                start = time.monotonic()
                r = run_connleak(["-p", str(c.pid), option, "100000000", "-d", "1"])
                self.assertFails(r, 2, r"%s must be at most \d+ \(each entry takes \d+ bytes of kernel memory, "
                                 r"\d+ MiB at most\)" % option)
                self.assertLess(time.monotonic() - start, 5, r.describe())
        c.cmd("open 1")
        c.exit()

    def test_map_bounds_accepted(self):
        """The bounds themselves load (kernel memory and start-up time as
        README says)."""
        c = self.target()
        help_text = run_connleak(["--help"]).stdout
        path = self.json_path()
        bounds = {}
        for option in ("--max-conns", "--max-sites", "--max-procs"):
            r = run_connleak(["-p", str(c.pid), option, "4294967295", "-d", "1"])
            bounds[option] = re.search(r"at most (\d+)", r.stderr).group(1)
        args = ["-q", "-p", str(c.pid), "--json", path, "-d", "1"]
        for option, n in bounds.items():
            args += [option, n]
        start = time.monotonic()
        r = run_connleak(args)
        r = Run(r.args, r.returncode, r.stdout, r.stderr, path)
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertIsNotNone(r.snapshot, r.describe())
        self.assertLess(time.monotonic() - start, 30, r.describe())
        self.assertIn("--max-conns", help_text)
        c.cmd("open 1")
        c.exit()

    # ---- what the messages say ----

    def test_pid_1_says_what_failed(self):
        """-p 1 names what really failed, not "no process" for one that is
        there. (--no-follow: without it, -p 1 takes every process under
        PID 1, and some of those map libpq.)"""
        r = run_connleak(["-p", "1", "--no-follow", "-d", "1"])
        self.assertFails(r, 1)
        self.assertNotRegex(r.stderr, r"no process with PID 1\b", r.describe())
        try:
            open("/proc/1/maps").close()
            self.assertRegex(r.stderr, r"process 1 .*no libpq mapped", r.describe())
        except PermissionError:
            self.assertRegex(r.stderr, r"cannot read the memory map of process 1 .*/proc/1/maps: Permission denied",
                             r.describe())

    def test_suggested_options_exist(self):
        """Every option a message or the help names is one connleak accepts."""
        help_text = run_connleak(["--help"]).stdout
        accepted = set(re.findall(r"(--[a-z][a-z-]*)", help_text))
        named = set()
        src = os.path.join(REPO, "userspace")
        for name in glob.glob("**/*.cpp", root_dir=src, recursive=True):  # one folder per layer
            if name.endswith(".cpp"):
                with open(os.path.join(src, name)) as f:
                    for literal in re.findall(r'"((?:[^"\\\n]|\\.)*)"', f.read()):
                        named.update(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", literal))
        self.assertIn("--verbose", named)
        self.assertEqual(sorted(named - accepted), [], "options named in messages but not accepted")

    def test_server_without_libpq(self):
        # libpq is loaded for --server only: when it cannot be, one line naming
        # libpq and why, before anything is traced; a runtime failure (exit 1).
        c = self.target()
        env = dict(os.environ, CONNLEAK_LIBPQ="/nonexistent/libpq.so.5")
        path = self.json_path()
        r = run_connleak(["-p", str(c.pid), "--server", "host=127.0.0.1", "-d", "1", "--json", path], env=env)
        self.assertFails(r, 1, r"^connleak: --server: cannot load libpq \(/nonexistent/libpq\.so\.5: cannot open")
        self.assertNoJson(path, r)
        # Without --server the same environment changes nothing.
        r = run_connleak(["-p", str(c.pid), "-d", "1", "-i", "0.5", "--json", path], env=env)
        self.assertEqual(r.returncode, 0, r.describe())
        c.cmd("open 1")
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
            "pid -1 as unsigned": ["-p", "4294967295", "--no-follow", "-d", "1"],
            "pid at pid_max": ["-p", str(pid_max()), "-d", "1"],
        }
        for name, args in cases.items():
            with self.subTest(name):
                self.check_usage(args)
        c.cmd("open 1")
        c.exit()

    def test_empty_json_name(self):
        c = self.target()
        r = run_connleak(["-p", str(c.pid), "-d", "1", "-j", ""])
        self.assertFails(r, 2, r"--json needs a file name")
        c.cmd("open 1")
        c.exit()


if __name__ == "__main__":
    unittest.main()
