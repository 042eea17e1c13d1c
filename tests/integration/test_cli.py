"""The command line a new user meets: --help (options, examples, the report's
words), usage errors said as connleak's own lines (never CLI11's), the man
page built from the same text, and `make install`. No server needed."""

import os
import re
import subprocess
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import BUILD_DIR, REPO  # noqa: E402
from connleak_testkit.tracer import run_connleak  # noqa: E402

MAN_PAGE = os.path.join(BUILD_DIR, "connleak.1")

# The words of the report a user must be able to look up (issue #18).
WORDS = ("acquired", "released", "active", "leaks", "pings", "released_untracked", "leaked_at_exit",
         "dropped", "db sockets", "discrepancy")


def readme_examples():
    """The command lines of README's "Examples:" block, comments stripped."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    block = re.search(r"Examples:\n\n```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def section(text, title):
    """The lines of `text` under the heading `title`, up to the next heading."""
    m = re.search(r"^%s:?\n(.*?)(?=^\S|\Z)" % re.escape(title), text, re.S | re.M)
    return m.group(1) if m else ""


class HelpTest(unittest.TestCase):

    def setUp(self):
        r = run_connleak(["--help"])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.stderr, "")
        self.help = r.stdout

    def test_examples_are_the_readmes(self):
        examples = section(self.help, "Examples")
        for command in readme_examples():
            self.assertIn(command, examples)

    def test_every_word_is_explained(self):
        words = section(self.help, "What the words mean")
        for word in WORDS:
            with self.subTest(word):
                self.assertRegex(words, r"(?m)^  %s\b.*\S" % re.escape(word))

    def test_launched_command_fate(self):
        text = section(self.help, "Launched command")
        for needle in ("SIGTERM", "SIGKILL", "--kill-after", "--keep-command"):
            self.assertIn(needle, text)

    def test_exit_status(self):
        text = section(self.help, "Exit status")
        for code in ("0", "1", "2"):
            self.assertRegex(text, r"(?m)^  %s " % code)

    def test_one_synopsis(self):
        """The three forms of the command line, and no second, poorer
        'Usage: connleak [OPTIONS]' line under them."""
        self.assertNotIn("Usage:", self.help)
        for form in ("connleak [OPTIONS] -p PID", "connleak [OPTIONS] -- COMMAND", "connleak [OPTIONS] --all"):
            self.assertIn(form, self.help.split("\nOptions:\n")[0])

    def test_lines_fit_a_terminal(self):
        """connleak's own text, after CLI11's option list."""
        footer = self.help[self.help.index("\nExamples:\n"):]
        for line in footer.splitlines():
            self.assertLessEqual(len(line), 80, line)
        self.assertNotIn("INT in", self.help)  # CLI11's validator text, not a value name


PID_1 = ("connleak: -p 1 would trace every process on the host (all run under PID 1): give --all for that, "
         "or -p 1 --no-follow for PID 1 alone")


class UsageErrorTest(unittest.TestCase):
    """Each parse error is one line of connleak's, exit 2."""

    CASES = [
        (["-p", "abc"], "connleak: -p/--pid: 'abc' is not a process ID (a number)"),
        (["--foo", "-p", "1"], "connleak: unknown option --foo (see connleak --help)"),
        (["-p"], "connleak: -p/--pid needs a value: PID"),
        (["-p", "1", "--json"], "connleak: -j/--json needs a value: FILE"),
        (["-i", "abc", "-p", "1"], "connleak: -i/--interval: 'abc' is not a number of seconds"),
        (["--top", "x", "-p", "1"], "connleak: --top: 'x' is not a whole number"),
        (["--db-port", "http", "-p", "1"], "connleak: --db-port: 'http' is not a TCP port (1 to 65535)"),
        (["--stack-size", "99999", "-p", "1"], "connleak: --stack-size: 99999 is not between 0 and 65536"),
        (["stray", "-p", "1"],
         "connleak: unexpected argument stray (a command to launch goes after --; see connleak --help)"),
        (["--keep-command", "-p", "1"], "connleak: --keep-command is about a launched command: give -- COMMAND "
                                        "(see connleak --help)"),
        (["--kill-after", "-1", "--", "true"], "connleak: --kill-after must be a number of seconds, 0 or more "
                                                "(see connleak --help)"),
        # --libpq of no file: were -p 1 taken, connleak would end at it, before any probe.
        (["-p", "1", "--libpq", "/nonexistent/libpq.so.5"], PID_1),
        (["-p", "4242", "-p", "1", "-d", "1", "--libpq", "/nonexistent/libpq.so.5"], PID_1),
    ]

    def test_messages(self):
        for args, want in self.CASES:
            with self.subTest(" ".join(args)):
                r = run_connleak(args)
                self.assertEqual(r.returncode, 2, r.describe())
                self.assertEqual(r.stdout, "", r.describe())
                self.assertEqual(r.stderr, want + "\n", r.describe())


    def test_pid_1_attaches_nothing(self):
        """-p 1 follows every process on the host: refused before anything
        is loaded (no report, no JSON file); --no-follow is PID 1 alone."""
        d = tempfile.mkdtemp(prefix="connleak-pid1-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "snapshot.json")
        # --libpq of no file: were -p 1 taken, connleak would end at it, before any probe.
        r = run_connleak(["-p", "1", "-i", "0.2", "-d", "1", "--json", path, "--libpq", "/nonexistent/libpq.so.5"])
        self.assertEqual((r.returncode, r.stdout, r.stderr), (2, "", PID_1 + "\n"), r.describe())
        self.assertFalse(os.path.exists(path), r.describe())
        r = run_connleak(["-p", "1", "--no-follow", "-d", "1", "--json", path])
        self.assertNotIn("-p 1 would trace", r.stderr, r.describe())
        self.assertNotEqual(r.returncode, 2, r.describe())


class ManPageTest(unittest.TestCase):

    def render(self):
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        r = subprocess.run(["man", "--warnings", "-l", MAN_PAGE], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "", "groff warnings")
        return r.stdout

    def test_renders_with_sections(self):
        text = self.render()
        for title in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "LAUNCHED COMMAND", "WHAT THE WORDS MEAN",
                      "EXIT STATUS", "EXAMPLES"):
            self.assertRegex(text, r"(?m)^%s$" % title)
        self.assertRegex(text, r"connleak\s+-\s+find database connection leaks")

    def test_same_options_as_help(self):
        text = self.render()
        helped = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", run_connleak(["--help"]).stdout))
        manned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*[a-z])", text))
        self.assertIn("--kill-after", helped)
        self.assertEqual(sorted(helped - manned), [])

    def test_words_and_examples(self):
        text = re.sub(r"\s+", " ", self.render())
        for word in WORDS:
            self.assertIn(word, text)
        for command in readme_examples():
            self.assertIn(command, text)


class InstallTest(unittest.TestCase):

    def test_make_install_destdir(self):
        dest = tempfile.mkdtemp(prefix="connleak-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        # -o build: install what ctest's build made, without reconfiguring it.
        r = subprocess.run(["make", "-C", REPO, "-o", "build", "install", "BUILD=" + BUILD_DIR, "DESTDIR=" + dest,
                            "PREFIX=/usr/local", "JOBS=2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
        self.assertEqual(r.returncode, 0, r.stdout)
        binary = os.path.join(dest, "usr/local/bin/connleak")
        page = os.path.join(dest, "usr/local/share/man/man1/connleak.1")
        self.assertTrue(os.access(binary, os.X_OK), r.stdout)
        with open(page) as f, open(MAN_PAGE) as g:
            self.assertEqual(f.read(), g.read())
        # man finds it by name under that prefix.
        m = subprocess.run(["man", "-M", os.path.join(dest, "usr/local/share/man"), "-w", "connleak"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(m.stdout.strip(), page, m.stderr)
        v = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(v.returncode, 0)


if __name__ == "__main__":
    unittest.main()
