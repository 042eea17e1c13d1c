"""Server truth (--server): each connection of a traced process as the
server's pg_stat_activity sees it, joined by socket (TCP: the client's
local end; Unix: the backend's own socket), and the connections made before
the attach listed from it, checked against pg_stat_activity read apart.

The client is this file run as `test_server.py client`: psycopg2 (libpq),
driven line by line on stdin, one "ok ..." reply per command:

    connect DSN         psycopg2.connect, autocommit -> ok id=N backend=PID t0=T t1=T
                        (t0, t1: wall time before and after the connect)
    begin ID            BEGIN; SELECT 1 on connection ID: idle in transaction
    sleep ID SECONDS    SELECT pg_sleep(SECONDS) on ID, in a thread: active
    exit                os._exit(0)

The failure paths (unreachable, wrong password, a role that cannot see
other users' sessions, a server restart, a backend terminated) each check
that counting goes on, that connleak says it once, and that no password
appears in anything connleak writes."""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

WAIT = 60  # seconds to wait for an expected snapshot
PREFORK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps", "python", "prefork.py")


# ---------------------------------------------------------------- the client

def client_main():
    import psycopg2
    conns = []
    print("ready pid=%d" % os.getpid(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "connect":
                t0 = time.time()
                c = psycopg2.connect(line.split(None, 1)[1].strip())
                t1 = time.time()
                c.autocommit = True
                conns.append(c)
                reply = "ok id=%d backend=%d t0=%.6f t1=%.6f" % (len(conns) - 1, c.get_backend_pid(), t0, t1)
            elif cmd == "begin":
                cur = conns[int(words[1])].cursor()
                cur.execute("BEGIN")
                cur.execute("SELECT 1")
                reply = "ok"
            elif cmd == "sleep":
                c, secs = conns[int(words[1])], float(words[2])

                def run():
                    try:
                        c.cursor().execute("SELECT pg_sleep(%s)", (secs,))
                    except Exception:
                        pass  # terminated: the test's business
                threading.Thread(target=run, daemon=True).start()
                reply = "ok"
            elif cmd == "exit":
                os._exit(0)
            else:
                reply = "error unknown command"
        except Exception as e:  # one line, the test fails on it
            reply = "error %s" % str(e).replace("\n", " ")
        print(reply, flush=True)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "client":
    client_main()
    sys.exit(0)

# ---------------------------------------------------------------- the tests

from connleak_testkit.paths import CONNLEAK, PYTHON  # noqa: E402
from connleak_testkit.pgserver import PgServer, free_port  # noqa: E402
from connleak_testkit.procs import end_process  # noqa: E402
from connleak_testkit.snapshot import find_process  # noqa: E402
from connleak_testkit.tracer import ConnleakTestCase, Tracer  # noqa: E402

STATES = ("idle in transaction", "idle", "active")


class Client:
    def __init__(self, env=None):
        self.p = subprocess.Popen([PYTHON, os.path.abspath(__file__), "client"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
        m = re.match(r"ready pid=(\d+)", self.p.stdout.readline())
        assert m, "client did not start: %s" % self.p.stderr.read()
        self.pid = int(m.group(1))

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        assert reply.startswith("ok"), "client: %r -> %r" % (line, reply)
        return dict(kv.split("=", 1) for kv in reply.split()[1:])

    def cleanup(self):
        end_process(self.p)


def pg_rows(server, where):
    """pg_stat_activity read apart from connleak: pid -> (state, backend_start epoch)."""
    out = {}
    text = server.psql("SELECT pid, state, extract(epoch FROM backend_start) FROM pg_stat_activity WHERE " + where)
    for line in text.splitlines():
        pid, state, start = line.split("|")
        out[int(pid)] = (state, float(start))
    return out


def server_conns(snap, pid):
    p = find_process(snap or {}, pid)
    return p["connections"] if p else []


class ServerTruthTest(ConnleakTestCase):
    def dsn(self, **extra):
        kv = {"host": self.server.host, "port": self.server.port, "user": "postgres", "dbname": "postgres"}
        kv.update(extra)
        return " ".join("%s=%s" % (k, v) for k, v in kv.items())

    def client(self, env=None):
        c = Client(env)
        self.addCleanup(c.cleanup)
        return c

    def tracer(self, t):
        self.addCleanup(t.cleanup)
        return t

    def own_backends(self):
        """connleak's own sessions (application_name connleak): never traced."""
        return pg_rows(self.server, "application_name = 'connleak'")

    def assert_not_self_traced(self, t, snap):
        """connleak's own process is not among the traced ones, and its own
        backend is joined to no connection."""
        own = self.own_backends()
        self.assertEqual(len(own), 1, "connleak's own connection to the server\n" + t.describe())
        pids = {p["pid"] for p in snap["processes"]}
        self.assertNotIn(t.popen.pid, pids, t.describe())
        for p in snap["processes"]:
            for c in p["connections"]:
                self.assertNotIn(c.get("backend_pid"), own, t.describe())

    def test_pre_attach_connections_with_exact_states_pids_and_ages(self):
        c = self.client()
        tcp = self.dsn(application_name=self.app("tcp"))
        unix = self.dsn(host=self.server.socket_dir, application_name=self.app("unix"))
        made = [c.cmd("connect " + tcp), c.cmd("connect " + unix), c.cmd("connect " + tcp)]
        c.cmd("begin 0")      # idle in transaction, over TCP
        c.cmd("sleep 2 600")  # active, over TCP; connection 1 stays idle, over the Unix socket
        backends = [int(m["backend"]) for m in made]
        deadline = time.monotonic() + WAIT
        while [pg_rows(self.server, "pid = %d" % b).get(b, ("?",))[0] for b in backends] != list(STATES):
            self.assertLess(time.monotonic(), deadline, "the client's sessions never reached their states")
            time.sleep(0.05)
        time.sleep(1.0)  # ages well above a rounding

        t = self.tracer(Tracer.attach([c.pid], leak_after=0, interval=0.2,
                                      extra=["--server", self.dsn()]))
        snap = t.wait_snapshot(lambda s: sum(1 for x in server_conns(s, c.pid)
                                             if x.get("server") and x["server"]["state"]) == 3, WAIT)
        conns = server_conns(snap, c.pid)
        self.assertEqual(len(conns), 3, t.describe())
        by_pid = {x["backend_pid"]: x for x in conns}
        self.assertEqual(sorted(by_pid), sorted(backends), t.describe())
        truth = pg_rows(self.server, "pid IN (%s)" % ",".join(map(str, backends)))
        snap_time = time.mktime(time.strptime(snap["time"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        for backend, state, m in zip(backends, STATES, made):
            x = by_pid[backend]
            self.assertIsNone(x["conn"], t.describe())
            self.assertTrue(x["pre_attach"], t.describe())
            self.assertEqual(x["server"]["state"], state, t.describe())
            self.assertEqual(truth[backend][0], state)
            # Its true age at the snapshot: from the backend's start, which the
            # server read apart says, to the snapshot's time (whole seconds, so
            # at or before the moment it was built).
            self.assertGreaterEqual(x["age_ms"], (snap_time - truth[backend][1]) * 1000.0, t.describe())
            self.assertGreaterEqual(x["age_ms"], (snap_time - float(m["t1"])) * 1000.0, t.describe())
            self.assertTrue(x["leak"], t.describe())
            self.assertEqual(x["socket"], "open", t.describe())
        self.assertEqual(by_pid[backends[0]]["peer"], "%s:%d" % (self.server.host, self.server.port))
        self.assertEqual(by_pid[backends[1]]["peer"], os.path.join(self.server.socket_dir,
                                                                   ".s.PGSQL.%d" % self.server.port))
        self.assertEqual(by_pid[backends[2]]["server"]["query"], "SELECT pg_sleep(600.0)")
        self.assertIsNotNone(by_pid[backends[0]]["server"]["xact_start"])
        proc = find_process(snap, c.pid)
        self.assertEqual((proc["acquired"], proc["active"], proc["leaks"]), (0, 0, 3), t.describe())
        self.assertEqual(snap["tracking_stats"]["total_leaks"], 3)
        self.assertEqual(snap["servers"], [{"server": "%s:%d" % (self.server.host, self.server.port),
                                            "ok": True, "sessions": snap["servers"][0]["sessions"]}])
        self.check_snapshot(snap, t.describe())
        self.assert_not_self_traced(t, snap)
        t.signal(15)
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertIn("pre-attach", t.stdout, t.describe())
        self.assertIn("idle in transaction", t.stdout, t.describe())
        self.assertEqual(t.stderr, "", t.describe())

    def start_prefork(self, app, workers):
        """tests/apps/python/prefork.py, its workers connected and holding
        every connection (hold) before connleak starts: (master, {worker pid:
        application_name})."""
        d = tempfile.mkdtemp(prefix="connleak-prefork-", dir=self.tmp)
        ci = self.server.conninfo("x").replace("application_name=x", "")
        p = subprocess.Popen([PYTHON, PREFORK, ci, app, str(workers), d, "hold"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.addCleanup(end_process, p)
        self.addCleanup(lambda: open(os.path.join(d, "stop"), "w").close())
        m = re.match(r"master pid=(\d+) workers=([\d,]+)", p.stdout.readline())
        self.assertIsNotNone(m, "prefork did not start")
        master = int(m.group(1))
        open(os.path.join(d, "go"), "w").close()
        done = {}
        deadline = time.monotonic() + WAIT
        while len(done) < workers:
            self.assertLess(time.monotonic(), deadline, "workers done: %s" % done)
            for name in os.listdir(d):
                if name.startswith("done."):
                    with open(os.path.join(d, name)) as f:
                        m = re.match(r"done pid=(\d+) app=(\S+)", f.read())
                    done[int(m.group(1))] = m.group(2)
            time.sleep(0.05)
        return master, done

    def test_master_pid_lists_its_workers_pre_attach_connections(self):
        """-p MASTER --server, the master without libpq (gunicorn's shape):
        the connections its workers made before the attach are listed from
        the server, under their worker, exactly those pg_stat_activity has."""
        master, workers = self.start_prefork(self.app(), 3)  # worker i holds i + 2 connections: 9
        truth = {pid: pg_rows(self.server, "application_name = '%s'" % name) for pid, name in workers.items()}
        self.assertEqual(sorted(len(rows) for rows in truth.values()), [2, 3, 4])

        def pre_attach_rows(s):
            return sum(1 for pid in workers for x in server_conns(s, pid) if x["pre_attach"] and x.get("server"))
        t = self.tracer(Tracer.attach([master], leak_after=0, interval=0.2, extra=["--server", self.dsn()]))
        snap = t.wait_snapshot(lambda s: pre_attach_rows(s) == 9, WAIT)
        self.assertEqual(pre_attach_rows(snap or {}), 9, t.describe())
        for pid, rows in truth.items():
            conns = server_conns(snap, pid)
            self.assertEqual(sorted(x["backend_pid"] for x in conns), sorted(rows), t.describe())
            for x in conns:
                self.assertEqual((x["conn"], x["pre_attach"], x["server"]["state"]), (None, True, "idle"),
                                 t.describe())
            self.assertEqual(find_process(snap, pid)["acquired"], 0, t.describe())
        self.assertEqual(server_conns(snap, master), [], t.describe())
        self.check_snapshot(snap, t.describe())
        self.assert_not_self_traced(t, snap)
        t.signal(15)
        self.assertEqual(t.wait(), 0, t.describe())

    def test_queries_off(self):
        c = self.client()
        c.cmd("connect " + self.dsn(application_name=self.app()))
        t = self.tracer(Tracer.attach([c.pid], extra=["--server", self.dsn(), "--server-queries", "off"]))
        snap = t.wait_snapshot(lambda s: any(x.get("server") for x in server_conns(s, c.pid)), WAIT)
        x = server_conns(snap, c.pid)[0]
        self.assertEqual(x["server"]["state"], "idle", t.describe())
        self.assertIsNone(x["server"]["query"], t.describe())

    def launch_interactive(self, extra):
        """connleak --server ... -- pqclient interactive: one connection opened."""
        from connleak_testkit.clients import Client as PqClient  # noqa: F401 (same protocol, run under connleak)
        from connleak_testkit.paths import PQCLIENT
        t = self.tracer(Tracer.launch([PQCLIENT, "interactive", self.server.conninfo(self.app())], interval=0.2,
                                      extra=extra))
        pid = int(t.wait_line(r"ready pid=(\d+)").group(1))
        return t, pid

    def open_one(self, t):
        t.send("open 1")
        return int(t.wait_line(r"ok open held=\d+ conns=(0x[0-9a-f,x]+)").group(1).split(",")[-1], 16)

    def test_traced_connection_and_pg_terminate_backend(self):
        t, pid = self.launch_interactive(["--server", self.dsn(), "--no-follow"])
        conn = self.open_one(t)
        snap = t.wait_snapshot(lambda s: any(x.get("server") for x in server_conns(s, pid)), WAIT)
        x = [x for x in server_conns(snap, pid) if x["conn"] == "0x%x" % conn][0]
        truth = pg_rows(self.server, "application_name LIKE 'test_traced%'")
        self.assertEqual(list(truth), [x["backend_pid"]], t.describe())
        self.assertEqual(x["server"]["state"], "idle")
        self.assertFalse(x["pre_attach"])
        self.assert_not_self_traced(t, snap)
        self.assertEqual(find_process(snap, pid)["acquired"], 1, t.describe())

        backend = x["backend_pid"]
        self.server.psql("SELECT pg_terminate_backend(%d)" % backend)
        snap = t.wait_snapshot(lambda s: [y["server"] for y in server_conns(s, pid)] == [None], WAIT)
        x = server_conns(snap, pid)[0]
        self.assertIsNone(x["server"], t.describe())
        # The handle still holds its backend's PID (libpq keeps it): gone from the server.
        self.assertEqual(x["backend_pid"], backend, t.describe())
        self.assertEqual(x["socket"], "peer_closed", t.describe())
        self.assertEqual(find_process(snap, pid)["active"], 1, t.describe())
        t.send("exit")
        self.assertEqual(t.wait(), 0, t.describe())
        self.assertNotIn("connleak: --server", t.stderr, t.describe())  # the server was there all along

    def test_server_restart_during_a_run(self):
        t, pid = self.launch_interactive(["--server", self.dsn()])
        self.open_one(t)
        snap = t.wait_snapshot(lambda s: any(x.get("server") for x in server_conns(s, pid)), WAIT)
        self.assert_not_self_traced(t, snap)  # a launched command, its children followed
        self.server.restart()
        conn = self.open_one(t)  # the first one died with the server
        snap = t.wait_snapshot(lambda s: any(x["conn"] == "0x%x" % conn and x.get("server")
                                             for x in server_conns(s, pid)), WAIT)
        x = [x for x in server_conns(snap, pid) if x["conn"] == "0x%x" % conn][0]
        self.assertEqual(x["server"]["state"], "idle", t.describe())
        self.assertEqual(find_process(snap, pid)["acquired"], 2, t.describe())
        t.send("exit")
        self.assertEqual(t.wait(), 0, t.describe())
        lost = re.findall(r"connleak: --server \S+: connection lost", t.stderr)
        again = re.findall(r"connleak: --server \S+: connected again", t.stderr)
        self.assertEqual((len(lost), len(again)), (1, 1), t.describe())

    def test_server_down_at_start_never_stalls(self):
        # A port nobody listens on, and one that accepts and never answers.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)
        down = free_port()
        from connleak_testkit.paths import PQCLIENT
        cmd = ["/bin/sh", "-c", '"$0" connectdb "$1" 3 1 && sleep 3', PQCLIENT, self.server.conninfo(self.app())]
        r = self.launch(cmd, interval=0.2, json_path="-",
                        extra=["--server", "host=127.0.0.1 port=%d" % down,
                               "--server", "host=127.0.0.1 port=%d connect_timeout=60" % silent.getsockname()[1]])
        self.assertEqual(r.returncode, 0, r.describe())
        self.assertEqual(r.snapshot["tracking_stats"]["total_acquired"], 3, r.describe())
        self.assertEqual(r.snapshot["servers"],
                         [{"server": "127.0.0.1:%d" % down, "ok": False, "sessions": 0},
                          {"server": "127.0.0.1:%d" % silent.getsockname()[1], "ok": False, "sessions": 0}])
        self.assertGreaterEqual(len(r.snapshots), 5, "reports went on while the server stalled\n" + r.describe())
        cannot = re.findall(r"connleak: --server (\S+): cannot connect \((.*)\); retrying", r.stderr)
        said = dict(cannot)
        self.assertEqual(len(said), len(cannot), "each said once\n" + r.describe())
        self.assertIn("Connection refused", said["127.0.0.1:%d" % down], r.describe())
        # The silent one says so once its deadline (5 s) passed, if the run lasted that long.
        self.assertIn(said.get("127.0.0.1:%d" % silent.getsockname()[1], "no answer within the timeout"),
                      ["no answer within the timeout"], r.describe())

    def passwords_run(self, extra, env, secret):
        """A run (pqclient connecting twice, then 2 s more for the server's
        reads) whose every output must not hold secret."""
        from connleak_testkit.paths import PQCLIENT
        cmd = ["/bin/sh", "-c", '"$0" connectdb "$1" 2 1 && sleep 2', PQCLIENT, self.server.conninfo(self.app())]
        r = self.launch(cmd, interval=0.2, extra=extra, env=env)
        self.assertEqual(r.returncode, 0, r.describe())
        for what, text in (("stdout", r.stdout), ("stderr", r.stderr),
                           ("json", open(r.json_path).read())):
            self.assertNotIn(secret, text, "%s holds the password\n%s" % (what, r.describe()))
        self.assertEqual(r.snapshot["tracking_stats"]["total_acquired"], 2, r.describe())
        return r

    def test_wrong_password(self):
        self.server.add_password_role("pw_wrong", "Right-Secret-4711")
        secret = "Wrong-Secret-0815"
        dsn = self.dsn(user="pw_wrong", password=secret)
        r = self.passwords_run(["--server", dsn], None, secret)
        cannot = re.findall(r"connleak: --server \S+: cannot connect \((.*)\)", r.stderr)
        self.assertEqual(len(cannot), 1, r.describe())
        self.assertIn('password authentication failed for user "pw_wrong"', cannot[0])
        env = dict(os.environ, PGPASSWORD=secret)
        r = self.passwords_run(["--server", self.dsn(user="pw_wrong")], env, secret)
        self.assertEqual(len(re.findall(r"cannot connect", r.stderr)), 1, r.describe())

    def test_unprivileged_role(self):
        secret = "Unpriv-Secret-2342"
        self.server.add_password_role("pw_unpriv", secret)
        passfile = os.path.join(self.tmp, "pgpass")
        with open(passfile, "w") as f:
            f.write("127.0.0.1:%d:*:pw_unpriv:%s\n" % (self.server.port, secret))
        os.chmod(passfile, 0o600)
        env = dict(os.environ, PGPASSFILE=passfile)
        for extra, e in ((["--server", "postgresql://pw_unpriv:%s@127.0.0.1:%d/postgres"
                           % (secret, self.server.port)], None),
                         (["--server", self.dsn(user="pw_unpriv")], env)):
            r = self.passwords_run(extra, e, secret)
            said = re.findall(r"connleak: --server \S+: role \"pw_unpriv\" cannot see other users' sessions "
                              r"\(grant it pg_read_all_stats, or use a superuser\)", r.stderr)
            self.assertEqual(len(said), 1, r.describe())
            self.assertNotIn("cannot connect", r.stderr, r.describe())
            self.assertTrue(r.snapshot["servers"][0]["ok"], r.describe())

    def test_password_hidden_from_cmdline(self):
        secret = "Cmdline-Secret-9999"
        c = self.client()
        c.cmd("connect " + self.dsn(application_name=self.app()))
        t = self.tracer(Tracer.attach([c.pid], extra=["--server", self.dsn(password=secret)]))
        t.wait_snapshot(lambda s: any(x.get("server") for x in server_conns(s, c.pid)), WAIT)
        with open("/proc/%d/cmdline" % t.popen.pid, "rb") as f:
            self.assertNotIn(secret.encode(), f.read())
        t.signal(15)
        self.assertEqual(t.wait(), 0, t.describe())

    def test_bad_dsn_is_a_usage_error(self):
        from connleak_testkit.tracer import run_connleak
        r = run_connleak(["--server", "postgresql://u:se%zzcret@h/db", "-p", "1"])
        self.assertEqual(r.returncode, 2, r.describe())
        self.assertEqual(r.stderr.count("\n"), 1, r.describe())
        self.assertTrue(r.stderr.startswith("connleak: --server #1: not a valid connection string or URI"),
                        r.describe())
        self.assertNotIn("se%zzcret", r.stderr)


if __name__ == "__main__":
    unittest.main()
