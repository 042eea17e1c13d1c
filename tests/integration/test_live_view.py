"""The live view, seen the way a person sees it: connleak runs in a real
pseudo-terminal (a private tmux server), pqclient leaks while we watch, and
the assertions are on the captured screen: the leaking site's row with its
counts, red; the healthy one green; the header totals; keys, resizing, and
the terminal given back (normal screen, cursor, stty modes, exit status)
after q, Ctrl-C, SIGTERM and a crash. Without a terminal the report is plain
text with no escape codes.

Handshakes, not sleeps: pqclient answers each command once done, and every
expectation is awaited on the screen (generous timeout) before it is
asserted, with the last screen in the failure message."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import CONNLEAK, PQCLIENT  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, kill_quietly  # noqa: E402
from connleak_testkit.clients import Client  # noqa: E402

TMUX = shutil.which("tmux")
WAIT = 60  # seconds to wait for an expected screen

COLUMNS = ("ACTIVE", "CHANGE", "SINCE START", "TREND", "LEAKS", "AT EXIT", "ACQUIRED", "RELEASED", "AVG HOLD", "MAX HOLD")
RED, GREEN = (31, 91), (32, 92)
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


class Cell:
    __slots__ = ("ch", "fg")

    def __init__(self, ch, fg):
        self.ch = ch
        self.fg = fg


def parse_sgr(text):
    """Lines of Cells (character + foreground colour number or None) from
    `tmux capture-pane -e` output; attributes carry across lines there."""
    lines, line, fg = [], [], None
    i = 0
    while i < len(text):
        m = _SGR.match(text, i)
        if m:
            params = [int(p) if p.isdigit() else 0 for p in re.split(r"[;:]", m.group(1))]
            k = 0
            while k < len(params):
                p = params[k]
                if p in (0, 39):
                    fg = None
                elif 30 <= p <= 37 or 90 <= p <= 97:
                    fg = p
                elif p in (38, 48):  # 256 or true colour: skip the arguments
                    fg = ("ext",) if p == 38 else fg
                    k += 2 if k + 1 < len(params) and params[k + 1] == 5 else 4
                k += 1
            i = m.end()
            continue
        if text[i] == "\n":
            lines.append(line)
            line = []
        else:
            line.append(Cell(text[i], fg))
        i += 1
    if line:
        lines.append(line)
    return lines


class Screen:
    """One captured screen: its text, and what a person reads off it."""

    def __init__(self, escaped):
        self.escaped = escaped
        self.cells = parse_sgr(escaped)
        self.lines = ["".join(c.ch for c in line) for line in self.cells]
        self.text = "\n".join(self.lines)

    def __contains__(self, s):
        return s in self.text

    def header_rows(self):
        """Indexes of the totals lines: under the title, down to the blank line."""
        rows = []
        for i in range(1, len(self.lines)):
            if not self.lines[i].strip():
                break
            rows.append(i)
        return rows

    def totals(self):
        """{"acquired": "7", ..., "leak ratio": "57.1%"} from the header lines."""
        head = " ".join(self.lines[i] for i in self.header_rows())
        return dict(re.findall(r"(acquired|released|active|leaks|leak ratio|dropped) (\S+)", head))

    def footer(self):
        rows = [line for line in self.lines if line.strip()]
        return rows[-1] if rows else ""

    def section(self, pid):
        """(first line index, lines) of the process with this pid."""
        for i, line in enumerate(self.lines):
            if line.startswith("PID %d " % pid):
                end = i + 1
                while end < len(self.lines) and self.lines[end].strip():
                    end += 1
                return i, self.lines[i:end]
        return None, []

    def table(self, pid):
        """{site: {column: cell text, "_row": line index}} for one process,
        cells cut under the (right-aligned) column headings."""
        start, lines = self.section(pid)
        out = {}
        heading = None
        for k, line in enumerate(lines):
            if line.startswith("  SITE "):
                heading = line
                cols = []
                for title in COLUMNS:
                    pos = heading.find(" " + title)
                    if pos >= 0:
                        cols.append((title, pos + 1, pos + 1 + len(title)))
                cols.sort(key=lambda c: c[1])
                continue
            if heading is None or line.startswith(("  LIVE CONNECTION", "  LAST USER ")):
                if line.startswith(("  LIVE CONNECTION", "  LAST USER ")):
                    break
                continue
            first = cols[0][1] if cols else len(line)
            # A cell reaches from after the previous heading to the end of
            # its own (numbers are right-aligned under their titles).
            row = {"_row": start + k, "_marker": line[:2].strip()}
            prev_end = first
            for title, _, end in cols:
                row[title] = line[prev_end:end].strip()
                prev_end = end
            out[line[2:first].strip()] = row
        return out

    def fg_at(self, row, needle):
        """Foreground colour of needle's first character on line row."""
        col = self.lines[row].find(needle)
        if col < 0:
            return "missing"
        return self.cells[row][col].fg

    def fg_of_value(self, label):
        """Colour of the value after "label " in the header."""
        for row in self.header_rows():
            m = re.search(re.escape(label) + r" (\S)", self.lines[row])
            if m:
                return self.cells[row][m.start(1)].fg
        return "missing"


def find_site(table, prefix):
    for site, row in table.items():
        if site.startswith(prefix):
            return row
    return None


class Pane:
    """A command in its own tmux server and window of a fixed size. A
    wrapper records stty modes before and after, the command's pid and its
    exit status, then sleeps: the pane stays as the command left it (a dead
    pane would get tmux's own "Pane is dead" line and cursor state)."""

    def __init__(self, tmpdir, argv, width=120, height=40, env=None):
        self.dir = tempfile.mkdtemp(prefix="pane-", dir=tmpdir)
        self.sock = os.path.join(self.dir, "tmux.sock")
        conf = os.path.join(self.dir, "tmux.conf")
        with open(conf, "w") as f:
            f.write("set -g status off\nset -g history-limit 0\n")
        exports = "".join("export %s=%s; " % (k, shq(v)) for k, v in (env or {}).items())
        unset = "" if env and "NO_COLOR" in env else "unset NO_COLOR; "
        script = ("ulimit -c 0; %s%sstty -g > %s/stty.before; "
                  "sh -c 'echo $$ > %s/pid; exec \"$@\"' connleak %s; "
                  "echo $? > %s/rc.tmp; stty -g > %s/stty.after; mv %s/rc.tmp %s/rc; exec sleep 3600"
                  % (unset, exports, self.dir, self.dir, " ".join(shq(a) for a in argv),
                     self.dir, self.dir, self.dir, self.dir))
        env_all = dict(os.environ)
        env_all.pop("TMUX", None)
        self.env = env_all
        self.tmux("-f", conf, "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script)

    def tmux(self, *args, check=True):
        p = subprocess.run([TMUX, "-S", self.sock] + list(args), capture_output=True, text=True,
                           env=self.env, timeout=30)
        if check and p.returncode != 0:
            raise AssertionError("tmux %s: %s" % (" ".join(args), p.stderr))
        return p.stdout

    def capture(self):
        return Screen(self.tmux("capture-pane", "-p", "-e", "-t", "t"))

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def resize(self, width, height):
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def flags(self):
        """alternate screen, cursor visible, autowrap: 0/1 each."""
        out = self.tmux("display-message", "-p", "-t", "t", "#{alternate_on} #{cursor_flag} #{wrap_flag}")
        return tuple(int(x) for x in out.split())

    def pid(self, timeout=WAIT):
        path = os.path.join(self.dir, "pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    return int(f.read())
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError("the pane's command never started")

    def read(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return f.read().strip()

    def wait_exit(self, timeout=WAIT):
        """The command's exit status, once the wrapper has recorded it."""
        path = os.path.join(self.dir, "rc")
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise AssertionError("connleak did not exit within %ss; screen:\n%s" % (timeout, self.capture().text))
            time.sleep(0.05)
        return int(self.read("rc"))

    def close(self):
        try:
            pid = int(self.read("pid"))
            if not os.path.exists(os.path.join(self.dir, "rc")):
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        self.tmux("kill-server", check=False)


def shq(s):
    s = str(s)
    return "'" + s.replace("'", "'\\''") + "'"


class LiveViewTest(ConnleakTestCase):

    @classmethod
    def setUpClass(cls):
        if not TMUX:
            raise AssertionError("tmux not found: the live view is tested in a real terminal (apt-get install tmux)")
        super().setUpClass()

    # ---- helpers ----

    def client(self, tag):
        c = Client.start(self.server.conninfo(self.app(tag)))
        self.addCleanup(c.cleanup)
        return c

    def pane(self, args, width=120, height=40, env=None):
        p = Pane(self.tmp, [CONNLEAK] + [str(a) for a in args], width, height, env)
        self.addCleanup(p.close)
        return p

    def wait_screen(self, pane, pred, what, timeout=WAIT, seen=None):
        """Captures until pred(screen) holds; returns that screen. seen, a
        list, collects every screen captured meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            s = pane.capture()
            if seen is not None:
                seen.append(s)
            if pred(s):
                return s
            if time.monotonic() > deadline:
                self.fail("waited %ss for %s; the screen:\n%s" % (timeout, what, s.text))
            time.sleep(0.05)

    def assertRestored(self, pane, rc, want_rc=0):
        self.assertEqual(rc, want_rc, pane.capture().text)
        self.assertEqual(pane.read("stty.after"), pane.read("stty.before"), "terminal modes not restored")
        self.assertEqual(pane.flags(), (0, 1, 1),
                         "alternate screen, cursor visible, autowrap after exit\n" + pane.capture().text)

    def live_screen(self, pane, pid):
        """Waits for the live view's first report listing pid."""
        s = self.wait_screen(pane, lambda s: s.section(pid)[1], "the first report listing PID %d" % pid)
        self.assertEqual(pane.flags()[0], 1, "the live view is on the alternate screen")
        return s

    # ---- tests ----

    def test_leaking_site_red_healthy_green_then_q(self):
        leaker = self.client("leak")
        healthy = self.client("ok")
        pane = self.pane(["--interval", "1", "--leak-after", "0", "-p", leaker.pid, "-p", healthy.pid])
        self.live_screen(pane, leaker.pid)
        self.live_screen(pane, healthy.pid)

        healthy.cmd("open 3")
        healthy.cmd("finish-all")
        leaker.cmd("open 4")

        def site_of(s, pid):
            return find_site(s.table(pid), "interactive_open")

        def shows(s, active, acquired):
            row, ok = site_of(s, leaker.pid), site_of(s, healthy.pid)
            return (row is not None and row["ACTIVE"] == str(active) and ok is not None
                    and ok["ACQUIRED"] == str(acquired) and ok["RELEASED"] == str(acquired))
        s = self.wait_screen(pane, lambda s: shows(s, 4, 3), "the leak of 4 and the 3 released handles")

        # The leaking site, as a person reads it: counts, climbing, red.
        row = site_of(s, leaker.pid)
        self.assertEqual({k: row[k] for k in ("ACTIVE", "SINCE START", "TREND", "LEAKS", "ACQUIRED", "RELEASED")},
                         {"ACTIVE": "4", "SINCE START": "+4", "TREND": "up", "LEAKS": "4", "ACQUIRED": "4",
                          "RELEASED": "0"}, s.text)
        self.assertEqual(row["_marker"], "!", s.text)
        self.assertIn(s.fg_at(row["_row"], "interactive_open"), RED, s.escaped)
        self.assertIn(s.fg_at(row["_row"], " 4 "), RED, s.escaped)
        # The healthy one: everything it took, it gave back. Green.
        ok = site_of(s, healthy.pid)
        self.assertEqual({k: ok[k] for k in ("ACTIVE", "LEAKS", "ACQUIRED", "RELEASED")},
                         {"ACTIVE": "0", "LEAKS": "0", "ACQUIRED": "3", "RELEASED": "3"}, s.text)
        self.assertEqual(ok["_marker"], "", s.text)
        self.assertIn(s.fg_at(ok["_row"], "interactive_open"), GREEN, s.escaped)
        # The header: totals over both processes, leaks in red.
        self.assertEqual({k: v for k, v in s.totals().items() if k != "active"},
                         {"acquired": "7", "released": "3", "leaks": "4", "leak ratio": "57.1%", "dropped": "0"},
                         s.text)
        self.assertTrue(s.totals()["active"].startswith("4"), s.text)
        self.assertIn(s.fg_of_value("leaks"), RED, s.escaped)
        self.assertIn(s.fg_of_value("leak ratio"), RED, s.escaped)
        # The live connections and their age: all 4 fit on 40 rows.
        start, lines = s.section(leaker.pid)
        row = r"! 0x[0-9a-f]+ +[0-9.]+ m?s +\S+ +%d +interactive_open" % leaker.pid  # address, held, state, thread
        oldest = [line for line in lines if re.match(row, line)]
        self.assertEqual(len(oldest), 4, s.text)
        self.assertNotIn("more live", s.text)

        # The leak goes on: the site climbs, the change since the last report shows.
        seen = []
        leaker.cmd("open 2")
        s = self.wait_screen(pane, lambda s: (site_of(s, leaker.pid) or {}).get("ACTIVE") == "6",
                             "active 6", seen=seen)
        row = site_of(s, leaker.pid)
        self.assertEqual((row["SINCE START"], row["LEAKS"], row["ACQUIRED"]), ("+6", "6", "6"), s.text)
        chg = [site_of(x, leaker.pid)["CHANGE"] for x in seen if (site_of(x, leaker.pid) or {}).get("ACTIVE") == "6"]
        self.assertEqual(chg[0], "+2", "the first report with 6 live handles says +2")
        self.assertEqual(site_of(s, healthy.pid)["TREND"] in ("flat", "down"), True, s.text)

        # Keys: sort cycles, pause shows.
        self.assertIn("sort: leaks", s.footer())
        pane.keys("s")
        self.wait_screen(pane, lambda s: "sort: active" in s.footer(), "sort: active")
        pane.keys("s")
        self.wait_screen(pane, lambda s: "sort: acquired" in s.footer(), "sort: acquired")
        pane.keys("p")
        self.wait_screen(pane, lambda s: "PAUSED" in s.footer(), "PAUSED")
        pane.keys("p")
        self.wait_screen(pane, lambda s: "PAUSED" not in s.footer() and "pause" in s.footer(), "resumed")

        # Resizing redraws to fit: the leak still readable at 60 columns.
        pane.resize(60, 20)

        def narrow(s):
            row = site_of(s, leaker.pid)
            return (all(len(line) <= 60 for line in s.lines) and "RELEASED" not in s.text
                    and row is not None and row.get("ACTIVE") == "6" and row.get("LEAKS") == "6")
        s = self.wait_screen(pane, narrow, "the narrow layout")
        self.assertIn(s.fg_at(site_of(s, leaker.pid)["_row"], "interactive_open"), RED, s.escaped)
        pane.resize(120, 40)
        self.wait_screen(pane, lambda s: "RELEASED" in s.text and "MAX HOLD" in s.text, "the wide layout again")

        # q: the shell's screen back, modes restored, exit status 0, and the
        # final report printed there, where it stays.
        pane.keys("q")
        self.assertRestored(pane, pane.wait_exit())
        s = pane.capture()
        self.assertIn("PID %d (pqclient)" % leaker.pid, s.text)
        self.assertRegex(s.text, r"PID %d \(pqclient\)  acquired 6  released 0  active 6  leaks 6" % leaker.pid)
        self.assertNotIn("LIVE CONNECTION", s.text)

    def test_leak_and_healthy_site_told_apart_then_ctrl_c(self):
        # One handler leaks every 4th request, the other finishes its own.
        churn = subprocess.Popen([PQCLIENT, "churn", self.server.conninfo(self.app()), "300", "50", "4"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(kill_quietly, churn)
        pid = int(re.match(r"ready pid=(\d+)", churn.stdout.readline()).group(1))
        pane = self.pane(["--interval", "0.5", "--leak-after", "1", "-p", pid])
        self.live_screen(pane, pid)

        def told_apart(s):
            t = s.table(pid)
            leaky, good = find_site(t, "leaky_handler"), find_site(t, "good_handler")
            return (leaky is not None and good is not None and int(leaky["LEAKS"]) >= 3 and leaky["TREND"] == "up"
                    and int(good["RELEASED"]) >= 10)
        s = self.wait_screen(pane, told_apart, "a climbing leaky_handler next to good_handler")
        t = s.table(pid)
        leaky, good = find_site(t, "leaky_handler"), find_site(t, "good_handler")
        self.assertIn(s.fg_at(leaky["_row"], "leaky_handler"), RED, s.escaped)
        self.assertEqual(leaky["RELEASED"], "0", s.text)
        self.assertEqual(good["LEAKS"], "0", s.text)
        self.assertNotEqual(good["TREND"], "up", s.text)
        self.assertIn(s.fg_at(good["_row"], "good_handler"), GREEN, s.escaped)
        listed = [line for line in s.section(pid)[1] if re.match(r"[! ] 0x[0-9a-f]+ ", line)]
        self.assertGreaterEqual(len(listed), 3, s.text)
        for line in listed[:3]:
            self.assertRegex(line, r"! 0x[0-9a-f]+ +[0-9]+\.[0-9] s +\S+ +%d +leaky_handler" % pid,
                             "the oldest live handles are the leaked ones\n" + s.text)

        pane.keys("C-c")
        self.assertRestored(pane, pane.wait_exit())
        self.assertIn("PID %d (pqclient)" % pid, pane.capture().text)

    def last_users(self, s, pid):
        """{last user label: (connections, pooled, checked out, leaks)} of
        the process's LAST USER table."""
        out = {}
        rows = False
        for line in s.section(pid)[1]:
            if line.startswith("  LAST USER "):
                rows = True
            elif rows and re.match(r"  \S.* +\d+ +\d+ +\d+ +\d+$", line):
                *label, a, b, c, d = line.split()
                out[" ".join(label)] = (int(a), int(b), int(c), int(d))
            elif rows:
                break
        return out

    def test_last_users_table_and_sort_by_last_user(self):
        """Issue 13: the live view shows each last user's handles, and the
        "last user" sort groups the live handles by it."""
        app = self.app("lastusers")
        c = Client.start(self.server.conninfo(app))
        self.addCleanup(c.cleanup)
        pane = self.pane(["--interval", "0.3", "--leak-after", "0", "-p", c.pid], 160, 45)
        self.live_screen(pane, c.pid)
        conns = Client.conns(c.cmd("open 4"))
        self.assertEqual(len(conns), 4)
        for cmd, i in (("query-a", 0), ("query-a", 2), ("query-b", 1)):
            c.cmd("%s %d" % (cmd, i))
        # The server saw the same: two backends last ran query_site_a's
        # statement, one query_site_b's, one nothing.
        out = self.server.psql("select query || '|' || count(*) from pg_stat_activity where application_name = '%s' "
                               "group by query order by query" % app)
        self.assertEqual(out.splitlines(), ["|1", "select 'a'|2", "select 'b'|1"])

        def table(s):
            return {label.split("+")[0]: n for label, n in self.last_users(s, c.pid).items()}
        want = {"query_site_a": (2, 0, 0, 2), "query_site_b": (1, 0, 0, 1), "(not known)": (1, 0, 0, 1)}
        s = self.wait_screen(pane, lambda s: table(s) == want, "the last users table %s" % want)
        labels = list(self.last_users(s, c.pid))
        self.assertTrue(labels[0].startswith("query_site_a+") and labels[1].startswith("query_site_b+"), s.text)

        def order(s):
            return [int(line.split()[1], 16) for line in s.section(c.pid)[1] if re.match(r"! 0x[0-9a-f]+ ", line)]
        self.assertEqual(order(s), conns, "oldest first\n" + s.text)
        for _ in range(5):
            pane.keys("s")
        s = self.wait_screen(pane, lambda s: "sort: last user" in s.footer(), "sort: last user")
        s = self.wait_screen(pane, lambda s: order(s) == [conns[0], conns[2], conns[1], conns[3]],
                             "live handles grouped by last user")
        self.assertIn("sort: last user", s.footer())
        pane.keys("s")
        self.wait_screen(pane, lambda s: "sort: leaks" in s.footer() and order(s) == conns, "back to sort: leaks")
        pane.keys("q")
        self.assertRestored(pane, pane.wait_exit())

    def test_sockets_from_before_the_attach_said_under_the_totals(self):
        """Without --server, connections made before the attach are in no
        count ("leaks 0" would read as all clear): a header line says how many
        sockets, as the text report's one-time note does, on every screen."""
        c = self.client("preattach")
        c.cmd("open 3")
        pane = self.pane(["--interval", "0.3", "-p", c.pid])
        self.live_screen(pane, c.pid)
        line = " 3 db sockets from before the attach, not counted: --server DSN shows them"

        def said(s):
            return [i for i, text in enumerate(s.lines) if text.rstrip() == line]
        s = self.wait_screen(pane, said, "the pre-attach line")
        self.assertEqual(said(s), [s.header_rows()[-1]], "once, the last header line\n" + s.text)
        self.assertEqual(s.totals()["leaks"], "0", s.text)
        pane.keys("q")
        self.assertRestored(pane, pane.wait_exit())

    def test_tall_terminal_lists_every_live_connection(self):
        """Issue #18: on 150x40, 7 live connections are all listed (not 3
        and "+4 more live" above 30 blank lines)."""
        app = self.app("tall")
        c = Client.start(self.server.conninfo(app))
        self.addCleanup(c.cleanup)
        pane = self.pane(["--interval", "0.3", "--leak-after", "0", "-p", c.pid], 150, 40)
        self.live_screen(pane, c.pid)
        conns = Client.conns(c.cmd("open 7"))
        self.assertEqual(len(conns), 7)
        self.assertEqual(self.server.psql("select count(*) from pg_stat_activity where application_name = '%s'" % app),
                         "7")

        def rows(s):
            return [line for line in s.section(c.pid)[1]
                    if re.match(r"! 0x[0-9a-f]+ +[0-9.]+ m?s +\S+ +%d +interactive_open" % c.pid, line)]
        s = self.wait_screen(pane, lambda s: (find_site(s.table(c.pid), "interactive_open") or {}).get("ACTIVE")
                             == "7", "7 live connections")
        self.assertEqual(sorted(int(r.split()[1], 16) for r in rows(s)), sorted(conns), s.text)
        self.assertNotIn("more live", s.text)
        self.assertEqual(len(s.lines), 40, s.text)
        self.assertNotIn("j/k scroll", s.footer(), "everything fits: nothing to scroll\n" + s.text)
        pane.keys("q")
        self.assertRestored(pane, pane.wait_exit())

    def test_sigterm_and_crash_give_the_terminal_back(self):
        c = self.client("sig")
        c.cmd("open 1")
        for sig, rc in ((signal.SIGTERM, 0), (signal.SIGSEGV, 128 + signal.SIGSEGV),
                        (signal.SIGABRT, 128 + signal.SIGABRT)):
            with self.subTest(signal=sig.name):
                pane = self.pane(["--interval", "0.3", "-p", c.pid])
                self.live_screen(pane, c.pid)
                os.kill(pane.pid(), sig)
                self.assertRestored(pane, pane.wait_exit(), rc)
                pane.close()

    def test_scrolling_when_rows_exceed_the_screen(self):
        clients = [self.client("scroll%d" % i) for i in range(4)]
        args = ["--interval", "0.3", "--leak-after", "0"]
        for c in clients:
            args += ["-p", c.pid]
        pane = self.pane(args, 100, 12)
        self.live_screen(pane, clients[0].pid)
        for c in clients:
            c.cmd("open 2")
        # Each process: heading, table heading, its site, 2 oldest live (+ heading).
        # 12 rows: the header (3 lines: the totals wrap at 100 columns once
        # db sockets and discrepancy join them), a blank, 7 body lines, a
        # blank, the key bar.
        first = self.wait_screen(pane, lambda s: re.search(r"lines 1-7 of 27", s.footer()), "a scrollable body")
        m = re.search(r"lines 1-(\d+) of (\d+)", first.footer())
        page, total = int(m.group(1)), int(m.group(2))
        self.assertGreater(total, page)
        top = first.lines.index("") + 1  # the body starts after the header's blank line
        body_top = first.lines[top]

        pane.keys("j")
        s = self.wait_screen(pane, lambda s: "lines 2-%d of" % (page + 1) in s.footer(), "one line down")
        self.assertEqual(s.lines[top], first.lines[top + 1])
        pane.keys("Down")
        self.wait_screen(pane, lambda s: "lines 3-%d of" % (page + 2) in s.footer(), "down arrow")
        pane.keys("G")
        self.wait_screen(pane, lambda s: "lines %d-%d of" % (total - page + 1, total) in s.footer(), "the end")
        pane.keys("k")
        self.wait_screen(pane, lambda s: "lines %d-%d of" % (total - page, total - 1) in s.footer(), "one line up")
        pane.keys("Up")
        self.wait_screen(pane, lambda s: "lines %d-%d of" % (total - page - 1, total - 2) in s.footer(), "up arrow")
        pane.keys("g")
        s = self.wait_screen(pane, lambda s: "lines 1-%d of" % page in s.footer(), "the top")
        self.assertEqual(s.lines[top], body_top)
        pane.keys("q")
        self.assertRestored(pane, pane.wait_exit())

    def test_no_color_and_NO_COLOR(self):
        for args, env in ((["--no-color"], None), ([], {"NO_COLOR": "1"})):
            with self.subTest(args=args, env=env):
                c = self.client("nocolor")
                pane = self.pane(args + ["--interval", "0.3", "--leak-after", "0", "-p", c.pid], env=env)
                self.live_screen(pane, c.pid)
                c.cmd("open 2")
                s = self.wait_screen(pane, lambda s: (find_site(s.table(c.pid), "interactive_open") or {}).get("LEAKS")
                                     == "2", "the site row")
                colours = {cell.fg for line in s.cells for cell in line}
                self.assertEqual(colours, {None}, "no colour at all\n" + repr(s.escaped))
                row = find_site(s.table(c.pid), "interactive_open")
                self.assertEqual((row["_marker"], row["LEAKS"]), ("!", "2"), s.text)  # still visible
                self.assertEqual(pane.flags()[0], 1, "still the live view")
                pane.keys("q")
                self.assertRestored(pane, pane.wait_exit())
                pane.close()

    def test_json_lines_on_a_terminal_is_not_the_live_view(self):
        c = self.client("jsonl")
        pane = self.pane(["--interval", "0.3", "--json", "-", "-p", c.pid])
        s = self.wait_screen(pane, lambda s: '"version":1' in s.text, "JSON Lines")
        self.assertEqual(pane.flags()[0], 0, "JSON Lines stay on the normal screen")
        self.assertEqual({cell.fg for line in s.cells for cell in line}, {None})
        pane.keys("C-c")
        self.assertRestored(pane, pane.wait_exit())

    def test_not_a_terminal_plain_text_without_escapes(self):
        ci = self.server.conninfo(self.app())
        for target in ("pipe", "file"):
            with self.subTest(stdout=target):
                args = [CONNLEAK, "--interval", "0.3", "--leak-after", "0", "--", PQCLIENT, "connectdb", ci, "3", "1"]
                if target == "pipe":
                    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
                    out, rc, err = p.stdout, p.returncode, p.stderr
                else:
                    path = os.path.join(self.tmp, "report.txt")
                    with open(path, "w") as f:
                        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                                           text=True, timeout=120)
                    with open(path) as f:
                        out, rc, err = f.read(), p.returncode, p.stderr
                self.assertEqual(rc, 0, err)
                self.assertNotIn("\x1b", out)
                self.assertRegex(out, r"PID \d+ \(pqclient\) exited  acquired 3  released 2")
                self.assertNotIn("LIVE CONNECTION", out)


if __name__ == "__main__":
    unittest.main()
