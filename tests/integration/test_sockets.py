"""Socket truth: connleak holds libpq's handles against the database sockets
the traced process really has open (db_sockets, tracking_discrepancy,
peer), checked against the server's own view (pg_stat_activity).

The client is this file run as `test_sockets.py client`: libpq through
ctypes (the real libpq, probed like any other) plus raw sockets that speak
the PostgreSQL startup protocol without libpq (another driver), driven line
by line on stdin, one "ok ..." reply per command:

    pq CONNINFO         PQconnectdb, must succeed -> ok conn=0x.. backend=PID
    pq-any CONNINFO     PQconnectdb, may fail     -> ok conn=0x.. status=S
    pq-async CONNINFO   PQconnectStart + a PQconnectPoll loop, must succeed
    pq-cycle N CONNINFO N x (PQconnectdb, must succeed, PQfinish)
    fork                fork(): the child holds every handle and socket; on
                        SIGUSR1 it PQfinish-es every handle, on SIGTERM it
                        exits -> ok child=PID
    reset CONN          PQreset (a new socket for the same handle)
    raw-tcp HOST PORT APP   TCP + startup packet, waits for ReadyForQuery
    raw-unix PATH APP       same over a Unix socket
    plain-tcp HOST PORT     connect only (not a database)
    plain-unix PATH         connect only
    query-all           SELECT 1 on every handle -> ok bad=N
    finish CONN         PQfinish one handle
    finish-all          PQfinish every handle
    close-raw           closes the raw and plain sockets
    exit                os._exit(0): handles and sockets left to the kernel

Every expected number is awaited in the JSON, then asserted exactly."""

import ctypes
import os
import re
import socket
import struct
import subprocess
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

WAIT = 60  # seconds to wait for an expected snapshot


# ---------------------------------------------------------------- the client

def startup_packet(app):
    params = b"".join(k + b"\0" + v + b"\0" for k, v in (
        (b"user", b"postgres"), (b"database", b"postgres"), (b"application_name", app.encode())))
    body = struct.pack("!I", 196608) + params + b"\0"  # protocol 3.0
    return struct.pack("!I", len(body) + 4) + body


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
    return data


def raw_startup(s, app):
    """Logs in over s like a driver of its own would, up to ReadyForQuery."""
    s.sendall(startup_packet(app))
    while True:
        kind, length = struct.unpack("!cI", recv_exact(s, 5))
        body = recv_exact(s, length - 4)
        if kind == b"E":
            raise RuntimeError("server refused the raw login: %r" % body)
        if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise RuntimeError("unexpected authentication request %r" % body)
        if kind == b"Z":
            return


def client_main():
    pq = ctypes.CDLL("libpq.so.5")
    pq.PQconnectdb.restype = ctypes.c_void_p
    pq.PQconnectdb.argtypes = [ctypes.c_char_p]
    for f in ("PQstatus", "PQbackendPID", "PQsocket"):
        getattr(pq, f).argtypes = [ctypes.c_void_p]
        getattr(pq, f).restype = ctypes.c_int
    pq.PQfinish.argtypes = [ctypes.c_void_p]
    pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    pq.PQexec.restype = ctypes.c_void_p
    pq.PQresultStatus.argtypes = [ctypes.c_void_p]
    pq.PQresultStatus.restype = ctypes.c_int
    pq.PQclear.argtypes = [ctypes.c_void_p]
    pq.PQconnectStart.restype = ctypes.c_void_p
    pq.PQconnectStart.argtypes = [ctypes.c_char_p]
    pq.PQconnectPoll.restype = ctypes.c_int
    pq.PQconnectPoll.argtypes = [ctypes.c_void_p]
    pq.PQreset.argtypes = [ctypes.c_void_p]

    handles = []
    raws = []
    print("ready pid=%d" % os.getpid(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd in ("pq", "pq-any"):
                c = pq.PQconnectdb(line.split(None, 1)[1].strip().encode())
                if not c:
                    raise RuntimeError("PQconnectdb returned NULL")
                handles.append(c)
                status = pq.PQstatus(c)
                if cmd == "pq" and status != 0:
                    raise RuntimeError("connection failed (status %d)" % status)
                reply = "ok conn=0x%x status=%d backend=%d" % (c, status, pq.PQbackendPID(c))
            elif cmd == "pq-async":
                from connleak_testkit.pqpoll import PGRES_POLLING_OK, poll_connect

                c = pq.PQconnectStart(line.split(None, 1)[1].strip().encode())
                if not c:
                    raise RuntimeError("PQconnectStart returned NULL")
                handles.append(c)
                state = poll_connect(pq, c)
                if state != PGRES_POLLING_OK or pq.PQstatus(c) != 0:
                    raise RuntimeError("async connection failed")
                reply = "ok conn=0x%x status=0 backend=%d" % (c, pq.PQbackendPID(c))
            elif cmd == "pq-cycle":
                conninfo = line.split(None, 2)[2].strip().encode()
                for _ in range(int(args[0])):
                    c = pq.PQconnectdb(conninfo)
                    status = pq.PQstatus(c) if c else -1
                    pq.PQfinish(c)
                    if status != 0:
                        raise RuntimeError("connection failed (status %d)" % status)
                reply = "ok"
            elif cmd == "fork":
                import signal
                ready_r, ready_w = os.pipe()
                child = os.fork()
                if child == 0:
                    def finish_all(signum, frame):
                        for c in handles:
                            pq.PQfinish(c)
                    signal.signal(signal.SIGUSR1, finish_all)
                    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
                    os.write(ready_w, b"r")  # handlers in place: the test may signal
                    while True:
                        signal.pause()
                os.read(ready_r, 1)
                os.close(ready_r)
                os.close(ready_w)
                reply = "ok child=%d" % child
            elif cmd == "reset":
                c = int(args[0], 16)
                pq.PQreset(c)
                if pq.PQstatus(c) != 0:
                    raise RuntimeError("PQreset failed")
                reply = "ok backend=%d" % pq.PQbackendPID(c)
            elif cmd in ("raw-tcp", "plain-tcp"):
                s = socket.create_connection((args[0], int(args[1])), timeout=30)
                raws.append(s)
                if cmd == "raw-tcp":
                    raw_startup(s, args[2])
                reply = "ok port=%d" % s.getsockname()[1]
            elif cmd in ("raw-unix", "plain-unix"):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                s.connect(args[0])
                raws.append(s)
                if cmd == "raw-unix":
                    raw_startup(s, args[1])
                reply = "ok"
            elif cmd == "query-all":
                bad = 0
                for c in handles:
                    r = pq.PQexec(c, b"select 1")
                    bad += not r or pq.PQresultStatus(r) != 2  # PGRES_TUPLES_OK
                    if r:
                        pq.PQclear(r)
                reply = "ok bad=%d" % bad
            elif cmd == "finish":
                c = int(args[0], 16)
                handles.remove(c)
                pq.PQfinish(c)
                reply = "ok"
            elif cmd == "finish-all":
                for c in handles:
                    pq.PQfinish(c)
                handles = []
                reply = "ok"
            elif cmd == "close-raw":
                for s in raws:
                    s.close()
                raws = []
                reply = "ok"
            elif cmd == "exit":
                sys.stdout.flush()
                os._exit(0)
            else:
                raise RuntimeError("unknown command %r" % cmd)
        except Exception as e:  # the test sees the reason
            reply = "error %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        print(reply, flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "client":
    client_main()
    sys.exit(0)


# ---------------------------------------------------------------- the tests

from connleak_testkit.paths import BUILD_DIR, PQCLIENT, PYTHON  # noqa: E402
from connleak_testkit.pgserver import PG_BIN  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer, launch  # noqa: E402
from connleak_testkit.clients import Client, pqclient_summaries  # noqa: E402
from connleak_testkit.snapshot import find_process  # noqa: E402
from connleak_testkit.procs import code_byte, end_process, private_libpq  # noqa: E402

SOCKET_KEYS = ("paired", "pre_attach", "untracked", "connecting", "handles_without_socket", "closed_at_exit",
               "dropped", "pre_attach_peers", "untracked_peers")


class SockClient:
    """This file's client, driven line by line."""

    def __init__(self, env=None):
        self.popen = subprocess.Popen([PYTHON, os.path.abspath(__file__), "client"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        line = self.popen.stdout.readline()
        m = re.match(r"ready pid=(\d+)", line)
        if not m:
            self.popen.kill()
            raise AssertionError("socket client did not start: %r %s" % (line, self.popen.communicate()[1]))
        self.pid = int(m.group(1))

    def cmd(self, line):
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()
        reply = self.popen.stdout.readline().strip()
        if not reply.startswith("ok"):
            raise AssertionError("socket client: %r -> %r" % (line, reply))
        return reply

    def pq(self, conninfo, may_fail=False, mode=None):
        """Returns (conn, backend pid)."""
        r = self.cmd("%s %s" % (mode or ("pq-any" if may_fail else "pq"), conninfo))
        m = re.search(r"conn=0x([0-9a-f]+) status=(\d+) backend=(\d+)", r)
        return int(m.group(1), 16), int(m.group(3))

    def exit(self):
        try:
            self.popen.stdin.write("exit\n")
            self.popen.stdin.flush()
        except BrokenPipeError:
            pass
        self.popen.communicate(timeout=60)

    def cleanup(self):
        end_process(self.popen)


class Relay:
    """A TCP relay to the server on a port of its own: a database server on a
    port other than 5432 with no .s.PGSQL socket beside it, as a remote server
    or a pooler looks from here. Nothing names it a database; only libpq
    reaching it can."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.peer = "127.0.0.1:%d" % self.port
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for s in self.socks:
            s.close()


def socket_view(proc):
    """The socket numbers of a process entry, for one-shot comparison."""
    s = proc["sockets"]
    return {"db_sockets": proc["db_sockets"], "tracking_discrepancy": proc["tracking_discrepancy"],
            "active": proc["active"], "paired": s["paired"], "pre_attach": s["pre_attach"],
            "untracked": s["untracked"], "connecting": s["connecting"],
            "handles_without_socket": s["handles_without_socket"], "closed_at_exit": s["closed_at_exit"],
            "pre_attach_peers": s["pre_attach_peers"], "untracked_peers": s["untracked_peers"]}


def want(**kw):
    d = {"db_sockets": 0, "tracking_discrepancy": 0, "active": 0, "paired": 0, "pre_attach": 0, "untracked": 0,
         "connecting": 0, "handles_without_socket": 0, "closed_at_exit": 0, "pre_attach_peers": {},
         "untracked_peers": {}}
    for k, v in kw.items():
        if k not in d:
            raise KeyError(k)
        d[k] = v
    return d


def conn_sockets(proc):
    """{conn int: (peer, socket state)} of the live handles."""
    return {int(c["conn"], 16): (c["peer"], c["socket"]) for c in proc["connections"]}


class SocketsTest(ConnleakTestCase):

    def setUp(self):
        super().setUp()
        self.tcp_peer = "127.0.0.1:%d" % self.server.port
        self.unix_path = os.path.join(self.server.socket_dir, ".s.PGSQL.%d" % self.server.port)

    # ---- helpers ----
    def tcp(self, app):
        return self.server.conninfo(app)

    def unix(self, app):
        return self.server.conninfo(app, host=self.server.socket_dir)

    def sock_client(self, env=None):
        c = SockClient(env)
        self.addCleanup(c.cleanup)
        return c

    def pq_client(self, conninfo):
        c = Client.start(conninfo)
        self.addCleanup(c.cleanup)
        return c

    def attach(self, pids, extra=()):
        t = Tracer.attach(pids, json_path=self.json_path(), extra=extra)
        self.addCleanup(t.cleanup)
        snap = t.wait_attached(timeout=WAIT)
        self.assertIsNotNone(snap, "connleak wrote no snapshot after attaching\n" + t.describe())
        self.assertTrue(t.alive(), "connleak exited right after attaching\n" + t.describe())
        return t

    def backends(self, *apps):
        """The server's count of client backends with these application_names."""
        names = ",".join("'%s'" % a for a in apps)
        return int(self.server.psql("select count(*) from pg_stat_activity where application_name in (%s)"
                                    % names))

    def check_totals(self, snap, ctx):
        st = snap["tracking_stats"]
        self.assertEqual(st["total_db_sockets"], sum(p["db_sockets"] for p in snap["processes"]), ctx)
        self.assertEqual(st["tracking_discrepancy"], sum(p["tracking_discrepancy"] for p in snap["processes"]), ctx)
        for p in snap["processes"]:
            s = p["sockets"]
            for k in SOCKET_KEYS:
                self.assertIn(k, s, ctx)
            self.assertEqual(p["db_sockets"], s["paired"] + s["pre_attach"] + s["untracked"] + s["connecting"], ctx)
            self.assertEqual(p["tracking_discrepancy"], p["db_sockets"] - p["active"], ctx)
            if not p["exited"]:
                self.assertEqual(s["paired"], p["active"] - s["handles_without_socket"], ctx)
            for c in p["connections"]:
                keys = list(c)
                self.assertEqual(keys[keys.index("peer") + 1], "local", ctx)  # as DESIGN.md orders them
                self.assertIn(c["socket"], ("open", "peer_closed", "closed", "none"), ctx)

    def await_sockets(self, t, pid, expected, conns=None):
        """Waits until pid's socket numbers are expected (and its handles'
        sockets are conns, if given), asserts them exactly."""
        def done(s):
            p = find_process(s, pid)
            return p is not None and socket_view(p) == expected and (conns is None or conn_sockets(p) == conns)
        snap = t.wait_snapshot(done, timeout=WAIT)
        ctx = t.describe()
        self.assertIsNotNone(snap, ctx)
        proc = find_process(snap, pid)
        self.assertIsNotNone(proc, "pid %d not in the snapshot\n%s" % (pid, ctx))
        self.assertEqual(socket_view(proc), expected, ctx)
        if conns is not None:
            self.assertEqual(conn_sockets(proc), conns, ctx)
        self.check_snapshot(snap, ctx)
        self.check_totals(snap, ctx)
        return snap, proc

    # ---- the tests ----
    def test_tcp_and_unix_clients_side_by_side(self):
        """db_sockets of each process == the server's count of its backends."""
        app_t, app_u = self.app("tcp"), self.app("unix")
        ct, cu = self.pq_client(self.tcp(app_t)), self.pq_client(self.unix(app_u))
        t = self.attach([ct.pid, cu.pid])
        conns_t = Client.conns(ct.cmd("open 3"))
        conns_u = Client.conns(cu.cmd("open 2"))
        self.await_sockets(t, ct.pid, want(db_sockets=3, active=3, paired=3))
        snap, pu = self.await_sockets(t, cu.pid, want(db_sockets=2, active=2, paired=2))
        pt = find_process(snap, ct.pid)
        self.assertEqual(socket_view(pt), want(db_sockets=3, active=3, paired=3), t.describe())
        ctx = t.describe()
        self.assertEqual(pt["db_sockets"], self.backends(app_t), ctx)
        self.assertEqual(pu["db_sockets"], self.backends(app_u), ctx)
        self.assertEqual(conn_sockets(pt), {c: (self.tcp_peer, "open") for c in conns_t}, ctx)
        self.assertEqual(conn_sockets(pu), {c: (self.unix_path, "open") for c in conns_u}, ctx)
        # local: each TCP handle's own end, as the server sees its client; none for Unix sockets.
        self.assertEqual([c["local"] for c in pu["connections"]], [None] * 2, ctx)
        def tcp_locals(s):
            p = find_process(s, ct.pid)
            return sorted(c["local"] or "" for c in p["connections"]) if p else []
        later = t.wait_snapshot(lambda s: len(tcp_locals(s)) == 3 and all(tcp_locals(s)), timeout=WAIT)
        clients = self.server.psql("select host(client_addr) || ':' || client_port from pg_stat_activity"
                                   " where application_name = '%s'" % app_t).split()
        self.assertEqual(tcp_locals(later), sorted(clients), t.describe())
        self.assertEqual(len(clients), 3, t.describe())
        self.assertEqual((snap["tracking_stats"]["total_db_sockets"], snap["tracking_stats"]["tracking_discrepancy"]),
                         (5, 0), ctx)

        ct.cmd("finish-old 1")
        cu.cmd("finish-all")
        self.await_sockets(t, ct.pid, want(db_sockets=2, active=2, paired=2))
        snap, pu = self.await_sockets(t, cu.pid, want())
        pt = find_process(snap, ct.pid)
        self.assertEqual(socket_view(pt), want(db_sockets=2, active=2, paired=2), t.describe())
        ctx = t.describe()
        self.assertEqual(pt["db_sockets"], self.backends(app_t), ctx)
        self.assertEqual(0, self.backends(app_u), ctx)
        self.assertEqual((snap["tracking_stats"]["total_db_sockets"], snap["tracking_stats"]["tracking_discrepancy"]),
                         (2, 0), ctx)

    def test_attach_after_connections_pre_attach(self):
        """Sockets held before the attach: pre_attach, discrepancy = their number."""
        app_t, app_u = self.app("tcp"), self.app("unix")
        ct, cu = self.pq_client(self.tcp(app_t)), self.pq_client(self.unix(app_u))
        ct.cmd("open 3")
        cu.cmd("open 2")
        t = self.attach([ct.pid, cu.pid], extra=["--db-port", str(self.server.port)])
        self.await_sockets(t, ct.pid, want(db_sockets=3, tracking_discrepancy=3, pre_attach=3,
                                           pre_attach_peers={self.tcp_peer: 3}))
        # A Unix socket named .s.PGSQL.<port> is a database's without options.
        self.await_sockets(t, cu.pid, want(db_sockets=2, tracking_discrepancy=2, pre_attach=2,
                                           pre_attach_peers={self.unix_path: 2}))
        self.assertEqual(self.backends(app_t), 3)
        self.assertEqual(self.backends(app_u), 2)

        ct.cmd("open 2")       # tracked: paired
        ct.cmd("finish-old 1")  # one made before the attach
        _, pt = self.await_sockets(t, ct.pid, want(db_sockets=4, tracking_discrepancy=2, active=2, paired=2,
                                                   pre_attach=2, pre_attach_peers={self.tcp_peer: 2}))
        self.assertEqual(pt["db_sockets"], self.backends(app_t), t.describe())

    def test_pre_attach_said_once_without_server(self):
        """Without --server, connections held since before the attach are
        not in "leaks": the text report says how many, once (under the
        totals of the first report that has them), and names --server. With
        --server their rows say it: no such line."""
        c = self.pq_client(self.tcp(self.app()))
        c.cmd("open 3")
        note = ("  3 database sockets held since before the attach (not in acquired, active or leaks): "
                "--server DSN shows each connection's age and state")
        t = Tracer.attach([c.pid], interval=0.2, duration=2, json_path=self.json_path())
        self.addCleanup(t.cleanup)
        self.assertEqual(t.wait(), 0, t.describe())
        lines = t.stdout.splitlines()
        headers = [i for i, line in enumerate(lines) if line.startswith("connleak ")]
        self.assertGreaterEqual(len(headers), 3, "reports, one per interval\n" + t.describe())
        self.assertEqual(lines.count(note), 1, t.describe())
        self.assertIn(lines.index(note) - 1, headers, t.describe())
        self.assertIn("discrepancy +3", lines[headers[-1]], t.describe())
        dsn = "host=%s port=%d user=%s dbname=%s" % (self.server.host, self.server.port, self.server.user,
                                                     self.server.dbname)
        t = Tracer.attach([c.pid], interval=0.2, duration=2, json_path=self.json_path("server.json"),
                          extra=["--server", dsn])
        self.addCleanup(t.cleanup)
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertGreaterEqual(len(re.findall(r"(?m)^connleak ", t.stdout)), 3, t.describe())
        self.assertNotIn("since before the attach", t.stdout, t.describe())

    def test_pre_attach_tcp_learned_from_libpq(self):
        """Without --db-port, a TCP server on another port than 5432 (behind a
        relay: nothing on this host says what it is) is known once the
        process's own libpq reaches it."""
        app = self.app()
        relay = self.relay()
        c = self.pq_client(self.relay_conninfo(relay, app))
        c.cmd("open 2")
        t = self.attach([c.pid])
        self.await_sockets(t, c.pid, want())
        c.cmd("open 1")
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=3, tracking_discrepancy=2, active=1, paired=1,
                                                    pre_attach=2, pre_attach_peers={relay.peer: 2}))
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())

    def relay(self):
        r = Relay(self.server.port)
        self.addCleanup(r.close)
        return r

    def relay_conninfo(self, relay, app):
        return "host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=%s" % (relay.port, app)

    def test_pre_attach_server_learned_from_any_process(self):
        """A socket held since before the attach, to a server on another port
        than 5432 (no --db-port): a database's once any traced libpq is seen
        connecting to that server, even with handles finished between two
        reports, and in another process."""
        relay = self.relay()
        app_held, app_cycle = self.app("held"), self.app("cycle")
        held, cycler = self.sock_client(), self.sock_client()
        held.pq(self.relay_conninfo(relay, app_held))
        t = self.attach([held.pid, cycler.pid])
        self.await_sockets(t, held.pid, want())  # nothing says it is a database yet
        cycler.cmd("pq-cycle 10 %s" % self.relay_conninfo(relay, app_cycle))
        _, proc = self.await_sockets(t, held.pid, want(db_sockets=1, tracking_discrepancy=1, pre_attach=1,
                                                       pre_attach_peers={relay.peer: 1}))
        self.assertEqual(proc["db_sockets"], self.backends(app_held), t.describe())
        # The reply came after the last PQfinish; a snapshot may predate it.
        t.wait_snapshot(lambda s: find_process(s, cycler.pid) and find_process(s, cycler.pid)["released"] == 10,
                        timeout=WAIT)
        snap, proc = self.await_sockets(t, cycler.pid, want())
        ctx = t.describe()
        self.assertEqual((proc["acquired"], proc["released"]), (10, 10), ctx)
        self.assertEqual(self.backends(app_cycle), 0, ctx)

    def test_pre_attach_local_server_known_at_attach(self):
        """A socket held since before the attach to this host's server on its
        own port (no --db-port, no libpq activity after the attach): the
        server is PostgreSQL (a TCP listener beside .s.PGSQL.<port>), so the
        socket counts from the first report."""
        app = self.app()
        c = self.sock_client()
        c.pq(self.tcp(app))
        c.pq(self.tcp(app))
        t = self.attach([c.pid])
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=2, tracking_discrepancy=2, pre_attach=2,
                                                    pre_attach_peers={self.tcp_peer: 2}))
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())
        self.assertEqual(proc["acquired"], 0, t.describe())

    def fork_with_handle(self, t, c, conninfo, peer):
        """c acquires one handle (traced), then forks: returns (conn, child pid)
        once the child is in the snapshot."""
        conn, _ = c.pq(conninfo)
        self.await_sockets(t, c.pid, want(db_sockets=1, active=1, paired=1), conns={conn: (peer, "open")})
        child = int(c.cmd("fork").split("child=")[1])
        self.addCleanup(lambda: os.kill(child, signal.SIGKILL) if os.path.exists("/proc/%d" % child) else None)
        return conn, child

    def test_forked_child_counts_inherited_sockets(self):
        """A forked child holds its parent's database sockets (the fds are
        inherited): counted in the child (untracked: not its handle), still
        counted in the parent."""
        relay = self.relay()
        app = self.app()
        c = self.sock_client()
        t = self.attach([c.pid])
        conn, child = self.fork_with_handle(t, c, self.relay_conninfo(relay, app), relay.peer)
        snap, proc = self.await_sockets(t, child, want(db_sockets=1, tracking_discrepancy=1, untracked=1,
                                                       untracked_peers={relay.peer: 1}))
        ctx = t.describe()
        self.assertEqual(socket_view(find_process(snap, c.pid)), want(db_sockets=1, active=1, paired=1), ctx)
        self.assertEqual(self.backends(app), 1, ctx)  # one socket, held by both
        os.kill(child, signal.SIGTERM)
        snap = t.wait_snapshot(lambda s: find_process(s, child) and find_process(s, child)["exited"], timeout=WAIT)
        proc = find_process(snap, child)
        ctx = t.describe()
        self.assertIsNotNone(proc, ctx)
        self.assertEqual(proc["sockets"]["closed_at_exit"], 1, ctx)
        self.assertEqual(proc["leaked_at_exit"], 0, ctx)  # the parent's handle, not the child's
        self.assertEqual(self.backends(app), 1, ctx)  # the parent still holds it

    def test_child_finishing_parents_handle_is_released_inherited(self):
        """A child that PQfinish-es a handle its parent acquired (the PGconn
        copied at fork): released_inherited, not released_untracked (which
        says "made before connleak attached")."""
        app = self.app()
        c = self.sock_client()
        t = self.attach([c.pid])
        conn, child = self.fork_with_handle(t, c, self.tcp(app), self.tcp_peer)
        os.kill(child, signal.SIGUSR1)
        snap = t.wait_snapshot(lambda s: find_process(s, child) and
                               find_process(s, child).get("released_inherited", 0) +
                               find_process(s, child)["released_untracked"] >= 1, timeout=WAIT)
        ctx = t.describe()
        self.assertIsNotNone(snap, ctx)
        proc = find_process(snap, child)
        self.assertEqual((proc.get("released_inherited"), proc["released_untracked"], proc["released"],
                          proc["acquired"], proc["active"]), (1, 0, 0, 0, 0), ctx)
        parent = find_process(snap, c.pid)
        self.assertEqual((parent["acquired"], parent["released"], parent["active"]), (1, 0, 1), ctx)
        self.check_snapshot(snap, ctx)

    def test_raw_socket_without_libpq_is_untracked(self):
        """Another driver's sockets (the startup protocol spoken by hand):
        untracked, each one +1 in the discrepancy."""
        app, app_raw = self.app("pq"), self.app("raw")
        c = self.sock_client()
        t = self.attach([c.pid])
        c.pq(self.tcp(app))
        c.pq(self.tcp(app))
        self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2))
        c.cmd("raw-tcp 127.0.0.1 %d %s" % (self.server.port, app_raw))
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=3, tracking_discrepancy=1, active=2, paired=2,
                                                    untracked=1, untracked_peers={self.tcp_peer: 1}))
        self.assertEqual(proc["db_sockets"], self.backends(app, app_raw), t.describe())
        self.assertEqual(self.backends(app_raw), 1)
        c.cmd("raw-unix %s %s" % (self.unix_path, app_raw))
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=4, tracking_discrepancy=2, active=2, paired=2,
                                                    untracked=2,
                                                    untracked_peers={self.tcp_peer: 1, self.unix_path: 1}))
        self.assertEqual(proc["db_sockets"], self.backends(app, app_raw), t.describe())
        c.cmd("close-raw")
        self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2))

    def fd_table_reads(self, t, after):
        """fd_tables_read of each report line (CONNLEAK_SCALE_STATS) after the first `after`."""
        return [int(n) for n in re.findall(r"connleak-scale: report_ms=[^\n]* fd_tables_read=(\d+)", t.stderr)][after:]

    def attach_with_scale_stats(self, pid):
        """connleak -p PID printing its per-report figures (CONNLEAK_SCALE_STATS)."""
        os.environ["CONNLEAK_SCALE_STATS"] = "1"
        try:
            return self.attach([pid])
        finally:
            del os.environ["CONNLEAK_SCALE_STATS"]

    def test_fd_table_read_again_only_on_change(self):
        """A process whose sockets all have records, its fd count unchanged,
        is not read in /proc again each report (fd_tables_read=0); any
        change is still seen at once: a socket opened outside libpq, and a
        handle finished while another socket opens (same fd count)."""
        app = self.app("pq")
        c = self.sock_client()
        t = self.attach_with_scale_stats(c.pid)
        c1, _ = c.pq(self.tcp(app))
        c.pq(self.tcp(app))
        self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2))
        settled = len(self.fd_table_reads(t, 0)) + 1  # the report after the one that showed them
        self.assertIsNotNone(t.wait_snapshot(lambda s: len(self.fd_table_reads(t, settled)) >= 5, timeout=WAIT),
                             t.describe())
        self.assertEqual(self.fd_table_reads(t, settled)[:5], [0] * 5, t.describe())

        c.cmd("plain-tcp 127.0.0.1 %d" % self.server.port)  # a database's socket, not libpq's: untracked
        self.await_sockets(t, c.pid, want(db_sockets=3, tracking_discrepancy=1, active=2, paired=2,
                                          untracked=1, untracked_peers={self.tcp_peer: 1}))
        changed = len(self.fd_table_reads(t, 0))
        c.cmd("finish %x" % c1)
        c.cmd("plain-tcp 127.0.0.1 %d" % self.server.port)
        self.await_sockets(t, c.pid, want(db_sockets=3, tracking_discrepancy=2, active=1, paired=1,
                                          untracked=2, untracked_peers={self.tcp_peer: 2}))
        # A report prints its stats line after it wrote its snapshot: the
        # line of the one that showed the change may not be out yet.
        shown = len(self.fd_table_reads(t, 0))
        self.assertIsNotNone(t.wait_snapshot(lambda s: len(self.fd_table_reads(t, 0)) > shown, timeout=WAIT),
                             t.describe())
        self.assertGreater(sum(self.fd_table_reads(t, changed)[:shown + 1 - changed]), 0, t.describe())
        c.cmd("close-raw")
        self.await_sockets(t, c.pid, want(db_sockets=1, active=1, paired=1))

    def scale_stat(self, t, key, after):
        """`key` of each report line (CONNLEAK_SCALE_STATS) after the first `after`."""
        return [int(n) for n in re.findall(r"connleak-scale: report_ms=[^\n]* %s=(\d+)" % key, t.stderr)][after:]

    def test_record_change_seen_with_records_read_only_on_change(self):
        """The record map is read again only when the kernel counted a
        change to it, and a process's socket report is built again only
        when what it is made from changed: quiet reports read no record,
        build no report and list no fd table. A change of a record alone
        (the server ends a backend: CLOSE_WAIT, no fd opened or closed, so
        the fd table read stands) still shows at once, as the server says.
        The traffic map is not walked either while no socket moves a byte."""
        app = self.app("pq")
        c = self.sock_client()
        t = self.attach_with_scale_stats(c.pid)
        kept, _ = c.pq(self.tcp(app))
        lost, lost_backend = c.pq(self.tcp(app))
        self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2),
                           conns={kept: (self.tcp_peer, "open"), lost: (self.tcp_peer, "open")})
        self.assertEqual(self.backends(app), 2)
        settled = len(self.scale_stat(t, "socket_records_reads", 0)) + 2  # after the builds that showed them
        self.assertIsNotNone(t.wait_snapshot(lambda s: len(self.scale_stat(t, "socket_records_reads", settled)) >= 5,
                                             timeout=WAIT), t.describe())
        # Nor walk the traffic map: no socket moved a byte (the kernel's
        # count of its writes stood).
        for key in ("socket_records_reads", "socket_reports_built", "fd_tables_read", "traffic_walks"):
            self.assertEqual(self.scale_stat(t, key, settled)[:5], [0] * 5, key + "\n" + t.describe())

        changed = len(self.scale_stat(t, "socket_records_reads", 0))
        self.server.psql("select pg_terminate_backend(%d)" % lost_backend)
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=1, tracking_discrepancy=-1, active=2, paired=1,
                                                    handles_without_socket=1),
                                     conns={kept: (self.tcp_peer, "open"), lost: (self.tcp_peer, "peer_closed")})
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())
        # The stats line of the report that showed it comes after its snapshot.
        shown = len(self.scale_stat(t, "socket_records_reads", 0))
        self.assertIsNotNone(
            t.wait_snapshot(lambda s: len(self.scale_stat(t, "socket_records_reads", 0)) > shown, timeout=WAIT),
            t.describe())
        self.assertGreater(sum(self.scale_stat(t, "socket_records_reads", changed)[:shown + 1 - changed]), 0,
                           t.describe())

    def test_tcp_receive_times_read_only_while_a_socket_can_receive(self):
        """The TCP iterator (receive times of the sockets sock_ops serves)
        walks every TCP socket of the namespace: it runs each report while
        one of them is open, and not at all once the only ones left are
        closed (a refused connect's handle keeps its closed socket) and
        nothing was written to the traffic map since."""
        app = self.app("pq")
        dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()  # nobody listens there now
        c = self.sock_client()
        t = self.attach_with_scale_stats(c.pid)
        live, _ = c.pq(self.tcp(app))
        self.await_sockets(t, c.pid, want(db_sockets=1, active=1, paired=1), conns={live: (self.tcp_peer, "open")})
        start = len(self.scale_stat(t, "tcp_iterator_runs", 0))
        self.assertIsNotNone(t.wait_snapshot(lambda s: len(self.scale_stat(t, "tcp_iterator_runs", start)) >= 3,
                                             timeout=WAIT), t.describe())
        self.assertEqual(self.scale_stat(t, "tcp_iterator_runs", start)[:3], [1] * 3, t.describe())
        c.cmd("finish %x" % live)
        bad, _ = c.pq("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5" % dead_port,
                      may_fail=True)
        self.await_sockets(t, c.pid, want(tracking_discrepancy=-1, active=1, handles_without_socket=1),
                           conns={bad: ("127.0.0.1:%d" % dead_port, "closed")})
        settled = len(self.scale_stat(t, "tcp_iterator_runs", 0)) + 2  # the report that saw it, and its walk
        self.assertIsNotNone(t.wait_snapshot(lambda s: len(self.scale_stat(t, "tcp_iterator_runs", settled)) >= 4,
                                             timeout=WAIT), t.describe())
        self.assertEqual(self.scale_stat(t, "tcp_iterator_runs", settled)[:4], [0] * 4, t.describe())

    def test_socket_records_sized_by_max_conns(self):
        """The socket record map holds as many records as --max-conns
        handles: with room for 4, 6 libpq connections leave 2 records
        dropped (counted, as are the 2 handles), where its old fixed size
        (16,384) dropped none. The server sees all 6."""
        app = self.app("pq")
        c = self.sock_client()
        t = self.attach([c.pid], extra=["--max-conns", "4"])
        for _ in range(6):
            c.pq(self.tcp(app))
        self.assertEqual(self.backends(app), 6)

        def done(s):
            p = find_process(s, c.pid)
            return p is not None and p["sockets"]["dropped"] == 2 and p["active"] == 4 and p["db_sockets"] == 4
        snap = t.wait_snapshot(done, timeout=WAIT)
        self.assertIsNotNone(snap, t.describe())
        proc = find_process(snap, c.pid)
        self.assertEqual(proc["sockets"]["dropped"], 2, t.describe())
        self.assertEqual(proc["dropped"], 2, t.describe())  # the handles the conns map had no room for
        self.assertEqual(proc["sockets"]["paired"], 4, t.describe())
        self.assertEqual(proc["db_sockets"] + proc["sockets"]["dropped"], self.backends(app), t.describe())

    def test_raw_socket_only_with_db_port(self):
        """A process without libpq connections: its raw socket to the server
        counts once the server is named (--db-port)."""
        app_raw = self.app("raw")
        c = self.sock_client()
        t = self.attach([c.pid], extra=["--db-port", str(self.server.port)])
        c.cmd("raw-tcp 127.0.0.1 %d %s" % (self.server.port, app_raw))
        self.await_sockets(t, c.pid, want(db_sockets=1, tracking_discrepancy=1, untracked=1,
                                          untracked_peers={self.tcp_peer: 1}))
        self.assertEqual(self.backends(app_raw), 1)

    def test_non_database_port_not_counted(self):
        """Sockets to something else than a database are not db sockets."""
        app = self.app()
        lt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lt.bind(("127.0.0.1", 0))
        lt.listen(8)
        self.addCleanup(lt.close)
        upath = os.path.join(self.tmp, "not-a-db.sock")
        lu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lu.bind(upath)
        lu.listen(8)
        self.addCleanup(lu.close)
        c = self.sock_client()
        t = self.attach([c.pid])
        c.pq(self.tcp(app))
        c.cmd("plain-tcp 127.0.0.1 %d" % lt.getsockname()[1])
        c.cmd("plain-tcp 127.0.0.1 %d" % lt.getsockname()[1])
        c.cmd("plain-unix %s" % upath)
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=1, active=1, paired=1))
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())

    def test_async_connect_and_reset_keep_their_pairing(self):
        """PQconnectStart + PQconnectPoll, and PQreset (a new socket under
        the same handle): still paired, the old socket not counted."""
        app = self.app()
        c = self.sock_client()
        t = self.attach([c.pid])
        a, _ = c.pq(self.tcp(app), mode="pq-async")
        u, _ = c.pq(self.unix(app), mode="pq-async")
        self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2),
                           conns={a: (self.tcp_peer, "open"), u: (self.unix_path, "open")})
        c.cmd("reset %x" % a)
        c.cmd("reset %x" % u)
        t.wait_snapshot(lambda s: find_process(s, c.pid) and find_process(s, c.pid)["resets"] == 2, timeout=WAIT)
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=2, active=2, paired=2),
                                     conns={a: (self.tcp_peer, "open"), u: (self.unix_path, "open")})
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())
        self.assertEqual(proc["resets"], 2, t.describe())

    def test_foreign_return_probe_on_connect_poll(self):
        """Another tool's return probe on PQconnectPoll puts its trampoline in
        the call's return slot, where connleak looks to tell the call still
        runs: its sockets are still paired. (A private libpq: the foreign
        probe reaches no other process on the machine.)"""
        floor = os.path.join(BUILD_DIR, "bench", "uprobe_floor")
        self.assertTrue(os.access(floor, os.X_OK), floor + " not built")
        lib = private_libpq(self.tmp)
        foreign = subprocess.Popen([floor, "attach", os.path.join(lib, "libpq.so.5"), "PQconnectPoll:ret", "--",
                                    "sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (foreign.kill(), foreign.wait()))
        app = self.app()
        c = self.sock_client(env=dict(os.environ, LD_LIBRARY_PATH=lib))
        deadline = time.monotonic() + WAIT
        while code_byte(c.pid, "PQconnectPoll") != 0xCC:  # the foreign probe is in
            if foreign.poll() is not None:  # its stderr only once it ended: a read before blocks till then
                self.fail("uprobe_floor attach failed: %s" % foreign.stderr.read())
            self.assertLess(time.monotonic(), deadline, "uprobe_floor never probed PQconnectPoll")
            time.sleep(0.05)
        t = self.attach([c.pid])
        a, _ = c.pq(self.tcp(app))
        u, _ = c.pq(self.unix(app))
        p, _ = c.pq(self.tcp(app), mode="pq-async")
        _, proc = self.await_sockets(t, c.pid, want(db_sockets=3, active=3, paired=3),
                                     conns={a: (self.tcp_peer, "open"), u: (self.unix_path, "open"),
                                            p: (self.tcp_peer, "open")})
        self.assertEqual(proc["db_sockets"], self.backends(app), t.describe())

    def test_db_options_name_other_servers(self):
        """--db-host and --db-socket: servers libpq never reached (here two
        plain listeners standing in for a database behind other names)."""
        lt = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lt.bind(("127.0.0.1", 0))
        lt.listen(8)
        self.addCleanup(lt.close)
        upath = os.path.join(self.tmp, "pgbouncer.sock")
        lu = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lu.bind(upath)
        lu.listen(8)
        self.addCleanup(lu.close)
        tport = lt.getsockname()[1]
        c = self.sock_client()
        t = self.attach([c.pid], extra=["--db-host", "127.0.0.1:%d" % tport, "--db-socket", upath])
        c.cmd("plain-tcp 127.0.0.1 %d" % tport)
        c.cmd("plain-unix %s" % upath)
        c.cmd("plain-tcp 127.0.0.1 %d" % self.server.port)  # neither named nor reached by libpq
        self.await_sockets(t, c.pid, want(db_sockets=2, tracking_discrepancy=2, untracked=2,
                                          untracked_peers={"127.0.0.1:%d" % tport: 1, upath: 1}))

    def test_no_sockets_option(self):
        """--no-sockets: no socket keys at all."""
        r = launch([PQCLIENT, "connectdb", self.tcp(self.app()), "2", "1"], tmpdir=self.tmp, extra=["--no-sockets"])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertNotIn("total_db_sockets", r.snapshot["tracking_stats"], r.describe())
        self.assertNotIn("tracking_discrepancy", r.snapshot["tracking_stats"], r.describe())
        for p in r.snapshot["processes"]:
            for k in ("db_sockets", "tracking_discrepancy", "sockets"):
                self.assertNotIn(k, p, r.describe())

    def test_terminated_backend_handle_loses_its_socket(self):
        """pg_terminate_backend: the handle is shown without its socket
        (peer_closed, then closed once libpq notices), not as healthy."""
        app_t, app_u = self.app("tcp"), self.app("unix")
        c = self.sock_client()
        t = self.attach([c.pid])
        kept, _ = c.pq(self.tcp(app_t))
        lost_t, pid_t = c.pq(self.tcp(app_t))
        lost_u, pid_u = c.pq(self.unix(app_u))
        self.await_sockets(t, c.pid, want(db_sockets=3, active=3, paired=3))
        self.server.psql("select pg_terminate_backend(%d), pg_terminate_backend(%d)" % (pid_t, pid_u))
        broken = want(db_sockets=1, tracking_discrepancy=-2, active=3, paired=1, handles_without_socket=2)
        _, proc = self.await_sockets(t, c.pid, broken, conns={
            kept: (self.tcp_peer, "open"), lost_t: (self.tcp_peer, "peer_closed"),
            lost_u: (self.unix_path, "peer_closed")})
        self.assertEqual(proc["db_sockets"], self.backends(app_t, app_u), t.describe())
        self.assertEqual(c.cmd("query-all"), "ok bad=2")  # libpq notices and closes them
        self.await_sockets(t, c.pid, broken, conns={
            kept: (self.tcp_peer, "open"), lost_t: (self.tcp_peer, "closed"), lost_u: (self.unix_path, "closed")})
        c.cmd("finish-all")
        self.await_sockets(t, c.pid, want())

    def test_failed_connect_handle_without_socket(self):
        """A connect refused: its handle (awaiting PQfinish) has a closed socket."""
        port = self.server.port
        dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()  # nobody listens there now
        c = self.sock_client()
        t = self.attach([c.pid], extra=["--db-port", str(port)])
        bad, _ = c.pq("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5" % dead_port,
                      may_fail=True)
        self.await_sockets(t, c.pid, want(tracking_discrepancy=-1, active=1, handles_without_socket=1),
                           conns={bad: ("127.0.0.1:%d" % dead_port, "closed")})

    def test_exit_closes_sockets(self):
        """At exit: live handles leaked_at_exit, the sockets the kernel closed
        counted (closed_at_exit), nothing left open."""
        app, app_raw = self.app("pq"), self.app("raw")
        c = self.sock_client()
        t = self.attach([c.pid])
        c.pq(self.tcp(app))
        c.pq(self.tcp(app))
        c.pq(self.unix(app))
        c.cmd("raw-tcp 127.0.0.1 %d %s" % (self.server.port, app_raw))
        self.await_sockets(t, c.pid, want(db_sockets=4, tracking_discrepancy=1, active=3, paired=3, untracked=1,
                                          untracked_peers={self.tcp_peer: 1}))
        c.exit()
        self.assertEqual(t.wait(), 0, t.describe())
        proc = find_process(t.last, c.pid)
        ctx = t.describe()
        self.assertTrue(proc["exited"], ctx)
        self.assertEqual(proc["leaked_at_exit"], 3, ctx)
        self.assertEqual(socket_view(proc), want(closed_at_exit=4), ctx)
        self.check_totals(t.last, ctx)

    def test_launched_command(self):
        """-- COMMAND: nothing predates the attach; leaked handles' sockets
        are closed at exit."""
        app = self.app()
        r = launch([PQCLIENT, "connectdb", self.unix(app), "4", "3"], tmpdir=self.tmp)
        self.assertEqual(r.returncode, 0, r.describe())
        pid = pqclient_summaries(r.stdout)[0]["pid"]
        proc = find_process(r.snapshot, pid)
        self.assertIsNotNone(proc, r.describe())
        self.assertEqual(proc["leaked_at_exit"], 3, r.describe())
        self.assertEqual(socket_view(proc), want(closed_at_exit=3), r.describe())
        self.check_totals(r.snapshot, r.describe())


class ServerRestartTest(ConnleakTestCase):
    """A server restart: every handle of the client loses its socket."""

    def test_restart(self):
        server = self.server
        app_t, app_u = self.app("tcp"), self.app("unix")
        c = SockClient()
        self.addCleanup(c.cleanup)
        t = Tracer.attach([c.pid], json_path=self.json_path())
        self.addCleanup(t.cleanup)
        self.assertIsNotNone(t.wait_attached(timeout=WAIT), t.describe())
        unix_path = os.path.join(server.socket_dir, ".s.PGSQL.%d" % server.port)
        tcp_peer = "127.0.0.1:%d" % server.port
        a, _ = c.pq(server.conninfo(app_t))
        b, _ = c.pq(server.conninfo(app_t))
        u, _ = c.pq(server.conninfo(app_u, host=server.socket_dir))
        expected = want(db_sockets=3, active=3, paired=3)
        snap = t.wait_snapshot(lambda s: find_process(s, c.pid) and socket_view(find_process(s, c.pid)) == expected,
                               timeout=WAIT)
        self.assertEqual(socket_view(find_process(snap, c.pid)), expected, t.describe())

        server._as_pg([os.path.join(PG_BIN, "pg_ctl"), "restart", "-D", server.data, "-m", "fast",
                       "-l", server.logfile, "-w", "-t", "60", "-s"])
        expected = want(tracking_discrepancy=-3, active=3, handles_without_socket=3)
        snap = t.wait_snapshot(lambda s: find_process(s, c.pid) and socket_view(find_process(s, c.pid)) == expected,
                               timeout=WAIT)
        proc = find_process(snap, c.pid)
        ctx = t.describe()
        self.assertEqual(socket_view(proc), expected, ctx)
        self.assertEqual(conn_sockets(proc), {a: (tcp_peer, "peer_closed"), b: (tcp_peer, "peer_closed"),
                                              u: (unix_path, "peer_closed")}, ctx)
        c.cmd("finish-all")


if __name__ == "__main__":
    unittest.main()
