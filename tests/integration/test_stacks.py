"""Acquiring stacks: deep, symbolized, without frame pointers.

stackclient (tests/stackclient, four compilation units, -O2) acquires from
two functions three calls deep (main -> service_x -> repo_x -> acquire_x ->
PQconnectdb), built without and with frame pointers; connleak must name both
acquiring functions as distinct sites, give the whole chain in frames, and
count each site exactly. Then the same binary stripped with its debug file in
a temporary build-id directory (--debug-dir), the "glue" mode where one
helper calls libpq for both paths (only the stack tells them apart;
--site-skip moves the site past it), and a psycopg2 script attached by PID,
whose stack must reach through psycopg2's module into the interpreter."""

import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402
from connleak_testkit.snapshot import counts, dump, find_process, proc_counts, stacks_told  # noqa: E402
from connleak_testkit.stacks import STACKCLIENT, StackClient, function, module  # noqa: E402
from connleak_testkit import benchlib  # noqa: E402
from connleak_testkit.paths import BUILD_DIR, CONNLEAK  # noqa: E402
from connleak_testkit import tracer as tracer_module  # noqa: E402

WAIT = 60
NA, NB, KA, KB = 4, 3, 2, 1  # connections by path a and b, and how many of each stay open


def build_id(path):
    out = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1)


class StackTest(ConnleakTestCase):

    def trace(self, binary, mode, extra=(), leak_after=3600):
        """Runs stackclient under connleak -p through all its steps; returns
        (snapshot while connections are held, final snapshot, pid, tracer)."""
        c = StackClient(binary, mode, self.server.conninfo(self.app()), NA, NB, KA, KB)
        self.addCleanup(c.cleanup)
        t = Tracer.attach([c.pid], leak_after=leak_after, json_path=self.json_path(), extra=list(extra))
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(WAIT), t.describe())
        c.step("done")
        held = counts(False, acquired=NA + NB, released=NA + NB - KA - KB, active=KA + KB)
        extra = list(extra)
        stacks = "--stack-size=0" not in extra and (
            "--stack-size" not in extra or extra[extra.index("--stack-size") + 1] != "0")
        snap = t.wait_snapshot(lambda s: find_process(s, c.pid) and proc_counts(find_process(s, c.pid)) == held
                               and (not stacks or stacks_told(find_process(s, c.pid))), WAIT)
        self.assertEqual(proc_counts(find_process(snap, c.pid)), held, t.describe())
        self.check_snapshot(snap, t.describe())
        c.step("finished")
        self.assertEqual(c.exit(), 0)
        self.assertEqual(t.wait(), 0, t.describe())
        final = find_process(t.last, c.pid)
        self.assertEqual(proc_counts(final), counts(True, acquired=NA + NB, released=NA + NB), t.describe())
        return find_process(snap, c.pid), final, t

    def check_stacks(self, proc, ctx, sites, chains, lines=True):
        """sites: {site function: (acquired, released, active)}; chains: {site
        function: functions the frames must list in order, from the first}."""
        self.assertEqual((proc["dropped_stacks"], proc["stacks_truncated"]), (0, 0), ctx)
        self.assertEqual(proc["stacks_unwound"], NA + NB, ctx)
        got = {}
        for s in proc["top_connection_users"]:
            f = function(s["site"])
            self.assertNotIn(f, got, "site %s listed twice\n%s" % (f, ctx))
            got[f] = s
        self.assertEqual(sorted(got), sorted(sites), ctx)
        for f, (acquired, released, active) in sites.items():
            s = got[f]
            self.assertEqual((s["acquired"], s["released"], s["active"]), (acquired, released, active), ctx)
            names = [function(x) for x in s["frames"]]
            chain = chains[f]
            self.assertEqual(names[:len(chain)], chain, "frames of %s\n%s" % (f, ctx))
            self.assertEqual(names[-1], "_start", "outermost frame last\n" + ctx)
            self.assertIn("__libc_start_main", names, ctx)
            self.assertIn(s["site"], s["frames"], ctx)
            if lines:
                self.assertRegex(s["site"], r" repo\.c:\d+$", "file:line from the debug info\n" + ctx)
            print("%s: %d frames" % (s["site"], len(s["frames"])), file=sys.stderr)
            for c in proc["connections"]:
                if function(c["site"]) == f:
                    self.assertEqual(c["site"], s["site"], ctx)

    def direct(self, binary, extra=(), lines=True):
        live, final, t = self.trace(binary, "direct", extra)
        chains = {"acquire_a": ["acquire_a", "repo_a", "service_a", "main"],
                  "acquire_b": ["acquire_b", "repo_b", "service_b", "main"]}
        self.check_stacks(live, t.describe(), {"acquire_a": (NA, NA - KA, KA), "acquire_b": (NB, NB - KB, KB)},
                          chains, lines)
        self.check_stacks(final, t.describe(), {"acquire_a": (NA, NA, 0), "acquire_b": (NB, NB, 0)}, chains, lines)

    def test_without_frame_pointers(self):
        self.direct(STACKCLIENT["nofp"])

    def test_with_frame_pointers(self):
        self.direct(STACKCLIENT["fp"])

    def test_stripped_with_debug_file(self):
        """Stripped binary (no .symtab, no DWARF), its debug file in a
        build-id directory given by --debug-dir."""
        binary = os.path.join(self.tmp, "stackclient_nofp")
        shutil.copy(STACKCLIENT["nofp"], binary)
        bid = build_id(binary)
        debug_dir = os.path.join(self.tmp, "debug")
        os.makedirs(os.path.join(debug_dir, ".build-id", bid[:2]))
        debug_file = os.path.join(debug_dir, ".build-id", bid[:2], bid[2:] + ".debug")
        subprocess.run(["objcopy", "--only-keep-debug", binary, debug_file], check=True)
        subprocess.run(["strip", "--strip-all", binary], check=True)
        syms = subprocess.run(["nm", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        self.assertIn("no symbols", syms)
        os.chmod(binary, 0o755)
        self.direct(binary, extra=["--debug-dir", debug_dir])

    def test_glue_needs_the_stack(self):
        """One helper (db_open) calls libpq for both paths: the kernel sees one
        caller; the stacks still split it, and --site-skip names the callers."""
        live, final, t = self.trace(STACKCLIENT["nofp"], "glue", ["--site-skip", r"^db_open\+"])
        chains = {"repo_a": ["db_open", "repo_a", "service_a", "main"],
                  "repo_b": ["db_open", "repo_b", "service_b", "main"]}
        self.check_stacks(live, t.describe(), {"repo_a": (NA, NA - KA, KA), "repo_b": (NB, NB - KB, KB)}, chains)
        self.check_stacks(final, t.describe(), {"repo_a": (NA, NA, 0), "repo_b": (NB, NB, 0)}, chains)

    def test_glue_without_site_skip(self):
        """Without --site-skip both stacks' site is db_open: still two entries
        (identical stacks share one; different ones do not), labelled apart
        by the caller where they part ("repo_a+0x.. → db_open+0x..")."""
        live, _, t = self.trace(STACKCLIENT["nofp"], "glue")
        ctx = t.describe()
        entries = live["top_connection_users"]
        self.assertEqual(len(entries), 2, ctx)
        by_caller = {function(s["frames"][1]): s for s in entries}
        self.assertEqual(sorted(by_caller), ["repo_a", "repo_b"], ctx)
        for caller, s in by_caller.items():
            parted, site = s["site"].split(" \u2192 ")
            self.assertEqual((function(parted), function(site)), (caller, "db_open"), ctx)
        self.assertEqual((by_caller["repo_a"]["acquired"], by_caller["repo_a"]["active"]), (NA, KA), ctx)
        self.assertEqual((by_caller["repo_b"]["acquired"], by_caller["repo_b"]["active"]), (NB, KB), ctx)

    def test_no_stacks(self):
        """--stack-size 0: no events, the kernel's caller sites as before."""
        live, final, t = self.trace(STACKCLIENT["nofp"], "direct", ["--stack-size", "0"])
        ctx = t.describe()
        self.assertEqual((live["stacks_unwound"], live["dropped_stacks"]), (0, 0), ctx)
        sites = sorted(function(s["site"]) for s in live["top_connection_users"])
        self.assertEqual(sites, ["acquire_a", "acquire_b"], ctx)
        for s in live["top_connection_users"]:
            self.assertNotIn("frames", s, ctx)

    def test_short_copy_is_counted(self):
        """--stack-size 64: too little to unwind past the first frames; the
        stacks are counted as truncated, the counts stay exact."""
        live, final, t = self.trace(STACKCLIENT["nofp"], "direct", ["--stack-size", "64"])
        ctx = t.describe()
        self.assertEqual((live["stacks_unwound"], live["stacks_truncated"]), (0, NA + NB), ctx)
        self.assertEqual(sum(s["acquired"] for s in live["top_connection_users"]), NA + NB, ctx)
        for s in live["top_connection_users"]:
            self.assertIn(function(s["site"]), ("acquire_a", "acquire_b"), ctx)
            self.assertNotIn("_start", [function(f) for f in s["frames"]], ctx)

    def test_one_kernel_id_per_stack(self):
        """The kernel names a stack it walks by a hash of its return
        addresses; a thread walking the same stack again takes it from its
        memo of the last walk (stack_walk.bpf.h). Either way one stack has
        one id: a stack split across two ids would still print right (the
        frames merge in userspace) but count twice in the kernel's maps."""
        tools = benchlib.Tools(BUILD_DIR, connleak=CONNLEAK)
        self.assertFalse(tools.missing(("pqstress",)), "pqstress not built (bench/CMakeLists.txt)")
        env = dict(os.environ, CONNLEAK_STACK_STATS="1")
        run = tracer_module.launch([tools.pqstress, "-n", "4000", "-t", "2"], interval=0.5,
                                   json_path=self.json_path(), env=env)
        self.assertEqual(run.returncode, 0, run.stderr)
        m = re.search(r"^connleak: stacks: (\d+) unwound, (\d+) truncated, (\d+) distinct, (\d+) kernel ids",
                      run.stderr, re.M)
        self.assertIsNotNone(m, run.stderr)
        _, truncated, distinct, kernel_ids = map(int, m.groups())
        self.assertEqual(truncated, 0, run.stderr)
        self.assertGreaterEqual(kernel_ids, 1, "the kernel walked no stack\n" + run.stderr)
        self.assertLessEqual(kernel_ids, distinct, run.stderr)
        procs = [p for p in run.snapshot["processes"] if p["acquired"]]
        self.assertEqual([(p["acquired"], p["stacks_unwound"], p["dropped_stacks"]) for p in procs],
                         [(4000, 4000, 0)], dump(run.snapshot))

    def test_psycopg2(self):
        """A psycopg2 script attached by PID: native frames through
        psycopg2's module into the interpreter, down to _start, the
        interpreter's evaluation frames replaced by the script's frames."""
        script = ("import sys, psycopg2\n"
                  "print('ready', flush=True)\n"
                  "sys.stdin.readline()\n"
                  "held = []\n"
                  "def handler(i):\n"
                  "    c = psycopg2.connect(sys.argv[1])\n"
                  "    if i % 2: held.append(c)\n"
                  "    else: c.close()\n"
                  "for i in range(4): handler(i)\n"
                  "print('done', flush=True)\n"
                  "sys.stdin.readline()\n")
        p = subprocess.Popen(["/usr/bin/python3", "-c", script, self.server.conninfo(self.app())],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.assertEqual(p.stdout.readline().strip(), "ready")
        t = Tracer.attach([p.pid], leak_after=3600, json_path=self.json_path())
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(WAIT), t.describe())
        p.stdin.write("go\n")
        p.stdin.flush()
        self.assertEqual(p.stdout.readline().strip(), "done")
        want = counts(False, acquired=4, released=2, active=2)
        snap = t.wait_snapshot(lambda s: find_process(s, p.pid) and proc_counts(find_process(s, p.pid)) == want
                               and stacks_told(find_process(s, p.pid)), WAIT)
        ctx = t.describe()
        proc = find_process(snap, p.pid)
        self.assertEqual(proc_counts(proc), want, ctx)
        self.assertEqual((proc["stacks_unwound"], proc["stacks_truncated"], proc["dropped_stacks"]), (4, 0, 0), ctx)
        self.assertEqual(len(proc["top_connection_users"]), 1, "one stack for one call path\n" + ctx)
        s = proc["top_connection_users"][0]
        frames = s["frames"]
        mods = [module(f) or "" for f in frames]
        funcs = [function(f) for f in frames]
        self.assertTrue(mods[0].startswith("_psycopg"), ctx)
        first_python = next(i for i, m in enumerate(mods) if m.startswith("python3"))
        self.assertTrue(all(m.startswith("_psycopg") for m in mods[:first_python]), ctx)
        self.assertNotIn("_PyEval_EvalFrameDefault", funcs, ctx)
        self.assertIn("handler (<string>:6)", frames, ctx)
        self.assertIn("<module> (<string>:9)", frames, ctx)
        self.assertEqual(s["site"], "handler (<string>:6)", ctx)
        self.assertIn("Py_BytesMain", funcs, ctx)
        self.assertEqual(funcs[-1], "_start", ctx)
        self.assertEqual((s["acquired"], s["released"], s["active"]), (4, 2, 2), ctx)
        print("psycopg2: %d frames: %s" % (len(frames), dump(frames)), file=sys.stderr)
        p.stdin.write("go\n")
        p.stdin.close()
        p.wait(timeout=60)
        self.assertEqual(t.wait(), 0, t.describe())


if __name__ == "__main__":
    unittest.main(verbosity=2)
