"""Handle state reads only where the state can have changed (issue 16): a
live handle's PGconn is read again from its process's memory only when it
is new, connecting or unknown, when its socket or the socket's traffic
changed since its last read, when it is connecting and its process called
PQconnectPoll, or when its last read came right after traffic; otherwise its last read stands (and once a safety period, 30 s here).

One handle is driven through every transition of its client state, each
checked against the client's own PQstatus()/PQtransactionStatus() and the
server's pg_stat_activity, with the reads connleak made counted
(CONNLEAK_SCALE_STATS: `handle_reads=N handle_reads_skipped=M` per report):

    idle -> in_transaction -> idle, the quiet reports in between skipping it
    terminated by the server while idle (the client sees nothing until its
    next query) -> broken at that query
    finished, a new handle made (at the same address or not) -> idle
    PQconnectStart -> connecting (read while its process polls) -> PQconnectPoll -> idle
    PQconnectStart to a refused port -> connecting -> PQconnectPoll -> broken
    (no byte moved, the socket closed by the RST before: only the poll tells)

Every transition must show within 20 s, before any handle's 30 s refresh
comes due (the first refresh is 30 to 60 s after a handle's first read):
a skip rule that ignored the socket's traffic would show none of them.

The client is this file run as `test_handle_refresh.py client`: libpq
through ctypes, one handle at a time, one "ok ..." reply per command:

    open CONNINFO   PQconnectdb, must succeed -> ok conn=0x.. backend=PID
    exec SQL        PQexec -> ok status=S xact=X (PQstatus, PQtransactionStatus)
    state           -> ok status=S xact=X
    start CONNINFO  PQconnectStart (another handle, left connecting) -> ok conn=0x.. status=S
    poll CONN       PQconnectPoll on it until done -> ok status=S xact=X
    finish          PQfinish the first handle"""

import ctypes
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

TRANSITION = 20  # seconds a transition may take to show: below the 30 s refresh
QUIET_AFTER_POLL = 40  # a connecting handle is read for 10 s after its process's last PQconnectPoll


def client_main():
    from connleak_testkit.pqpoll import poll_connect

    pq = ctypes.CDLL("libpq.so.5")
    for f in ("PQconnectdb", "PQconnectStart"):
        getattr(pq, f).restype = ctypes.c_void_p
        getattr(pq, f).argtypes = [ctypes.c_char_p]
    for f in ("PQstatus", "PQtransactionStatus", "PQbackendPID", "PQsocket", "PQconnectPoll"):
        getattr(pq, f).argtypes = [ctypes.c_void_p]
        getattr(pq, f).restype = ctypes.c_int
    pq.PQfinish.argtypes = [ctypes.c_void_p]
    pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pq.PQexec.restype = ctypes.c_void_p
    pq.PQclear.argtypes = [ctypes.c_void_p]

    main, started = None, {}
    print("ready pid=%d" % os.getpid(), flush=True)
    for line in sys.stdin:
        words = line.split(None, 1)
        if not words:
            continue
        cmd, rest = words[0], (words[1].strip() if len(words) > 1 else "")
        if cmd == "open":
            main = pq.PQconnectdb(rest.encode())
            if not main or pq.PQstatus(main) != 0:
                print("error: connection failed", flush=True)
                continue
            reply = "ok conn=0x%x backend=%d" % (main, pq.PQbackendPID(main))
        elif cmd == "exec":
            pq.PQclear(pq.PQexec(main, rest.encode()))
            reply = "ok status=%d xact=%d" % (pq.PQstatus(main), pq.PQtransactionStatus(main))
        elif cmd == "state":
            reply = "ok status=%d xact=%d" % (pq.PQstatus(main), pq.PQtransactionStatus(main))
        elif cmd == "start":
            c = pq.PQconnectStart(rest.encode())
            started["0x%x" % c] = c
            reply = "ok conn=0x%x status=%d" % (c, pq.PQstatus(c))
        elif cmd == "poll":
            c = started[rest]
            poll_connect(pq, c)
            reply = "ok status=%d xact=%d" % (pq.PQstatus(c), pq.PQtransactionStatus(c))
        elif cmd == "finish":
            pq.PQfinish(main)
            main = None
            reply = "ok"
        else:
            reply = "error: unknown command"
        print(reply, flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "client":
    client_main()
    sys.exit(0)

from connleak_testkit.paths import PYTHON  # noqa: E402
from connleak_testkit.pgserver import PgServer, free_port  # noqa: E402
from connleak_testkit.procs import LineProcess  # noqa: E402
from connleak_testkit.snapshot import find_process  # noqa: E402
from connleak_testkit.tracer import Tracer  # noqa: E402

SCALE_LINE = re.compile(r"connleak-scale: report_ms=.*\bhandle_reads=(\d+) handle_reads_skipped=(\d+)")


class Client(LineProcess):
    def __init__(self):
        super().__init__([PYTHON, os.path.abspath(__file__), "client"], "the client")

    def cmd(self, line):
        reply = self.send(line)
        assert reply.startswith("ok"), "client: %r -> %r (%s)" % (line, reply, self.popen.poll())
        return dict(kv.split("=", 1) for kv in reply.split()[1:])


class HandleRefreshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = PgServer()
        cls.server.start()
        cls.dsn = cls.server.conninfo("refresh")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def reads(self, t):
        """(handle_reads, handle_reads_skipped) of each report so far."""
        return [(int(a), int(b)) for a, b in SCALE_LINE.findall(t.stderr)]

    def await_state(self, t, client, states, what):
        """The first snapshot where the client's handles (by address) are in
        `states` ({conn: state}); returns its connections by address."""
        def conns(s):
            p = find_process(s, client.pid)
            return {c["conn"]: c for c in p["connections"]} if p else {}

        snap = t.wait_snapshot(lambda s: {a: c.get("state") for a, c in conns(s).items()} == states,
                               timeout=TRANSITION)
        got = conns(snap or {})
        self.assertEqual({a: c.get("state") for a, c in got.items()}, states,
                         "%s: not shown within %d s\n%s" % (what, TRANSITION, t.describe()))
        return got

    def await_quiet(self, t, reads, skipped, what, timeout=TRANSITION):
        """A report after now that read `reads` handles and skipped `skipped`."""
        since = len(self.reads(t))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (reads, skipped) in self.reads(t)[since:]:
                return
            time.sleep(0.1)
        self.fail("%s: no report with %d read and %d skipped; reports since: %s\n%s"
                  % (what, reads, skipped, self.reads(t)[since:], t.describe()))

    def server_state(self, backend):
        return self.server.psql("select state from pg_stat_activity where pid = %d" % backend)

    def test_state_follows_every_transition_with_reads_skipped_between(self):
        client = Client()
        self.addCleanup(client.cleanup)
        os.environ["CONNLEAK_SCALE_STATS"] = "1"
        try:
            t = Tracer.attach([client.pid], interval=0.3)
        finally:
            del os.environ["CONNLEAK_SCALE_STATS"]
        self.addCleanup(t.cleanup)
        t.wait_attached()

        a = client.cmd("open " + self.dsn)
        addr, backend = a["conn"], int(a["backend"])
        got = self.await_state(t, client, {addr: "idle"}, "a new handle")
        self.assertEqual(got[addr]["backend_pid"], backend)
        self.assertEqual(self.server_state(backend), "idle")
        self.await_quiet(t, 0, 1, "idle, nothing sent")

        self.assertEqual(client.cmd("exec BEGIN"), {"status": "0", "xact": "2"})  # PQTRANS_INTRANS
        self.await_state(t, client, {addr: "in_transaction"}, "BEGIN")
        self.assertEqual(self.server_state(backend), "idle in transaction")
        self.await_quiet(t, 0, 1, "in a transaction, nothing sent")

        self.assertEqual(client.cmd("exec COMMIT"), {"status": "0", "xact": "0"})
        self.await_state(t, client, {addr: "idle"}, "COMMIT")
        self.assertEqual(self.server_state(backend), "idle")
        self.await_quiet(t, 0, 1, "idle again")

        # Terminated by the server while idle: the client's libpq learns it
        # only in its next call (its status stays CONNECTION_OK till then),
        # and so does connleak: the FIN makes the socket peer_closed (a
        # read: still idle), the next query's traffic makes it broken.
        self.assertEqual(self.server.psql("select pg_terminate_backend(%d)" % backend), "t")
        deadline = time.monotonic() + TRANSITION
        while self.server_state(backend) != "" and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.server_state(backend), "")
        got = self.await_state(t, client, {addr: "idle"}, "terminated, not noticed by the client")
        self.assertEqual(client.cmd("state"), {"status": "0", "xact": "0"})
        self.assertEqual(client.cmd("exec SELECT 1"), {"status": "1", "xact": "4"})  # CONNECTION_BAD, UNKNOWN
        got = self.await_state(t, client, {addr: "broken"}, "the query after the termination")
        self.assertIsNone(got[addr]["backend_pid"])  # PQbackendPID: 0 unless connected
        self.await_quiet(t, 0, 1, "broken")

        # Finished, and a new handle made, likely at the same address: a new
        # handle (its own acquire), read as such.
        client.cmd("finish")
        b = client.cmd("open " + self.dsn)
        got = self.await_state(t, client, {b["conn"]: "idle"}, "a new handle after PQfinish")
        self.assertEqual(got[b["conn"]]["backend_pid"], int(b["backend"]))
        self.await_quiet(t, 0, 1, "the new handle idle")

        # Connecting: PQconnectPoll changes it, without traffic when the
        # connect was refused (the RST closed the socket before the poll
        # that sees it). Read while its process polls (and 10 s after),
        # else skipped like the others.
        c = client.cmd("start " + self.dsn)
        self.assertEqual(c["status"], "2")  # CONNECTION_STARTED
        self.await_state(t, client, {b["conn"]: "idle", c["conn"]: "connecting"}, "PQconnectStart")
        self.await_quiet(t, 0, 2, "connecting, not polled", timeout=QUIET_AFTER_POLL)
        self.assertEqual(client.cmd("poll " + c["conn"]), {"status": "0", "xact": "0"})
        self.await_state(t, client, {b["conn"]: "idle", c["conn"]: "idle"}, "PQconnectPoll done")
        self.await_quiet(t, 0, 2, "both idle")

        refused = self.server.conninfo("refresh", port=free_port())
        r = client.cmd("start " + refused)
        self.assertEqual(r["status"], "2")  # CONNECTION_STARTED: the refusal is seen at the next poll
        states = {b["conn"]: "idle", c["conn"]: "idle", r["conn"]: "connecting"}
        self.await_state(t, client, states, "PQconnectStart to a refused port")
        self.await_quiet(t, 0, 3, "refused, not polled", timeout=QUIET_AFTER_POLL)
        self.assertEqual(client.cmd("poll " + r["conn"]), {"status": "1", "xact": "4"})  # CONNECTION_BAD
        states[r["conn"]] = "broken"
        self.await_state(t, client, states, "PQconnectPoll seeing the refusal")
        self.await_quiet(t, 0, 3, "broken beside two idle")

if __name__ == "__main__":
    unittest.main()
