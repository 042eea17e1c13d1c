"""connleak's own memory: the stack-event ring buffer (issue #17's footprint).

The ring's data pages are mapped into connleak twice (so that a record that
wraps around reads as one), and VmRSS counts every page of both mappings
from the start, used or not: a ring of 8 MiB was 16 MB of connleak's RSS
(41 MB in all, the goal 30). Since the kernel walks the stacks it knows,
the ring carries a copy of the stack only until userspace has learnt a
stack's return addresses (a burst at a process's start), each stack walked
once, Python code objects, last-use copies: 4 MiB by default, more only for
a --stack-size of which 64 whole copies would not fit.

Each run: connleak launches pqstress (2 processes x 4 threads, every connect
API in turn, so a burst of new stacks in each process at start); counts must
be exact with no stack event dropped, and connleak's largest mapping of a BPF
map must be the ring's, resident whole: a producer page and the data twice.
The default --stack-size 8192 (4 MiB), 65536 (8 MiB), and 0 (a page, which
nothing reads or maps).

No PostgreSQL server needed. Env (set by ctest): CONNLEAK, BUILD_DIR.
"""

import os
import re
import shutil
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit import benchlib  # noqa: E402
from connleak_testkit.paths import BUILD_DIR, CONNLEAK  # noqa: E402
from connleak_testkit.snapshot import find_process, read_json  # noqa: E402

MIB = 1 << 20
RINGBUF = 27  # BPF_MAP_TYPE_RINGBUF


# What only --server (libpq) or HTTPS would need: libpq and what it links (TLS,
# Kerberos, LDAP), and what Debian's libcpp-httplib.so links (libssl,
# libcrypto, brotli).
NOT_UNLESS_USED = re.compile(r"lib(pq|ssl|crypto|gnutls|gssapi_krb5|krb5|k5crypto|ldap-[\d.]+|lber-[\d.]+|sasl2|"
                             r"brotli(common|dec|enc)|cpp-httplib)\.so")


def loaded_libraries(pid):
    """The file names of the shared libraries loaded in the process: mapped
    executable. (The symbolizer maps the traced processes' libraries too, as
    private read-write copies, to read their symbols.)"""
    with open("/proc/%d/maps" % pid) as f:
        return sorted({os.path.basename(fields[5]) for fields in map(str.split, f)
                       if len(fields) >= 6 and "x" in fields[1] and ".so" in os.path.basename(fields[5])})


def bpf_map_mappings(pid):
    """(size, rss) in bytes of each mapping of a BPF map in the process (the
    ring buffer's data, the skeleton's .bss), from /proc/PID/smaps."""
    out, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                cur = None
                if fields[-1] == "anon_inode:bpf-map":
                    cur = {"size": 0, "rss": 0}
                    out.append(cur)
            elif cur is not None and fields[0] in ("Size:", "Rss:"):
                cur[fields[0][:-1].lower()] = int(fields[1]) * 1024
    return [(m["size"], m["rss"]) for m in out]


class FootprintTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tools = benchlib.Tools(BUILD_DIR, connleak=CONNLEAK)
        missing = cls.tools.missing(("connleak", "pqstress"))
        if missing:
            raise AssertionError("not built: %s" % ", ".join(missing))

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="connleak-footprint-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_pqstress(self, extra):
        """connleak [extra] -- pqstress 2 x 4 threads, 8,000 lifecycles, held
        at the end: the ring's mappings while it holds, and the process rows
        of the final snapshot."""
        json_path = os.path.join(self.tmp, "snap.json")
        client = [self.tools.pqstress, "-n", 8000, "-P", 2, "-t", 4, "-a", "mix", "-W", "-T", 120]
        mon = benchlib.Monitored(benchlib.connleak_cmd(self.tools, json_path, interval=0.25, extra=extra) +
                                 ["--"] + client, self.tmp, name="footprint")
        self.addCleanup(lambda: mon.alive() and mon.kill())
        out = benchlib.wait_for(lambda: '"role":"total"' in mon.stdout() or not mon.alive(), 120)
        self.assertTrue(out and mon.alive(), "pqstress did not finish\n" + mon.describe())
        lines = benchlib.tagged_json(mon.stdout(), "pqstress")
        total = [x for x in lines if x["role"] == "total"][0]
        workers = [x for x in lines if x["role"] == "proc"]
        mappings = bpf_map_mappings(mon.pid)
        # The event ring (the traffic hooks' 4 KiB wakeup ring, io_wake, is another)
        rings = [m["max_entries"] for m in benchlib.bpf_maps_of(mon.pid)
                 if m.get("map_type") == RINGBUF and m.get("name") == "events"]
        os.kill(total["pid"], signal.SIGUSR1)
        self.assertEqual(mon.wait(120), 0, mon.describe())
        final = read_json(json_path)
        return mappings, rings, workers, final, mon

    def check(self, extra, ring):
        mappings, rings, workers, final, mon = self.run_pqstress(extra)
        stacks = extra != ["--stack-size", "0"]
        self.assertEqual(rings, [ring], "the event ring's size")
        if stacks:
            # The ring's read-only mapping: its producer page and the data twice.
            self.assertIn((4096 + 2 * ring, 4096 + 2 * ring), mappings, mon.describe())
        # Without stacks the largest is the traffic hooks' wakeup ring (io_wake:
        # its producer page and 4 KiB of data twice).
        self.assertLessEqual(max(size for size, rss in mappings), 4096 + 2 * ring if stacks else 3 * 4096,
                             "no larger BPF map mapping than the ring's: %s" % mappings)
        self.assertEqual(len(workers), 2)
        for w in workers:
            p = find_process(final, w["pid"]) or {}
            got = {k: p.get(k) for k in ("acquired", "released", "leaked_at_exit", "dropped", "dropped_stacks",
                                         "stacks_unwound", "stacks_truncated")}
            want = {"acquired": w["acquired"], "released": w["finished"], "leaked_at_exit": w["held"],
                    "dropped": 0, "dropped_stacks": 0, "stacks_unwound": w["acquired"] if stacks else 0,
                    "stacks_truncated": 0}
            self.assertEqual(got, want, "pid %d\n%s" % (w["pid"], mon.describe()))

    def test_default_ring_is_4_mib(self):
        self.check([], 4 * MIB)

    def test_ring_grows_with_stack_size(self):
        self.check(["--stack-size", 65536], 8 * MIB)

    def test_no_stacks_no_ring_to_speak_of(self):
        # Nothing reads the ring without stacks: a page, never mapped.
        self.check(["--stack-size", "0"], 4096)


    def test_libraries_mapped_only_when_used(self):
        """A run with --http (plain HTTP) and no --server maps none of libpq,
        TLS, Kerberos, LDAP or brotli (they were 7-8 MB of its RssFile); the
        run's own libraries are mapped (libbpf, so the maps are read right)."""
        holder = os.path.join(BUILD_DIR, "bench", "handle_holder")
        r, w = os.pipe()
        mon = benchlib.Monitored([CONNLEAK, "-q", "-i", "0.5", "--http", "127.0.0.1:0", "--", holder, 2, 2,
                                  "host=127.0.0.1 port=1 connect_timeout=1"], self.tmp, name="libraries", stdin=r)
        os.close(r)
        self.addCleanup(lambda: mon.alive() and mon.kill())
        ready = benchlib.wait_for(lambda: "ready" in mon.stdout() or not mon.alive(), 60)
        self.assertTrue(ready and mon.alive(), "handle_holder did not get ready\n" + mon.describe())
        libs = loaded_libraries(mon.pid)
        os.close(w)  # handle_holder finishes its handles and exits, then connleak
        self.assertEqual(mon.wait(60), 0, mon.describe())
        self.assertEqual([lib for lib in libs if NOT_UNLESS_USED.match(lib)], [], libs)
        self.assertTrue(any(lib.startswith("libbpf.so") for lib in libs), libs)


if __name__ == "__main__":
    unittest.main(verbosity=2)
