"""Pools (issue 13): connleak reads each libpq handle's state from the
target's memory, with PGconn's layout learnt from libpq's accessors. Against
real pools from Debian (psycopg2's ThreadedConnectionPool, SQLAlchemy's
QueuePool, psycopg_pool): k checkouts leaked after a query and m healthy
connections give leaks == k exactly, the m idle ones are not leaks, and each
handle's state, backend_pid, database and user equal what the client's own
PQtransactionStatus() / PQbackendPID() / PQdb() / PQuser() say (the drivers
call them) and what pg_stat_activity says."""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pylib"))

from connleak_testkit.paths import CONNLEAK, PYTHON  # noqa: E402
from connleak_testkit.pgserver import PgServer  # noqa: E402
from connleak_testkit.procs import LineProcess  # noqa: E402
from connleak_testkit.snapshot import dump, find_process  # noqa: E402
from connleak_testkit.tracer import Tracer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
POOLS = os.path.join(os.path.dirname(HERE), "apps", "python", "pools.py")
LEAK_AFTER = 1

# PQtransactionStatus() → connleak's state; pg_stat_activity's state for it.
XACT_STATE = {0: "idle", 1: "busy", 2: "in_transaction", 3: "in_error"}
SERVER_STATE = {"idle": "idle", "in_transaction": "idle in transaction",
                "in_error": "idle in transaction (aborted)"}


def function(site):
    """'leaky_route (/x/pools.py:93)' → 'leaky_route'."""
    return site.split(" (")[0]


ROUTES = ("leaky_route", "failing_route", "healthy_route", "orphan_route")


def route_of(frames):
    """The pools.py route in a last user's stack (innermost first: query()
    is the innermost frame of pools.py, its caller the route), None when the
    last user is not known."""
    for f in frames or ():
        if function(f) in ROUTES:
            return function(f)
    return None


def by_route(last_users):
    """{route or None: {connections, pooled, checked_out, leaks}}, entries
    of one route added up."""
    out = {}
    for u in last_users:
        e = out.setdefault(route_of(u["frames"]), {"connections": 0, "pooled": 0, "checked_out": 0, "leaks": 0})
        for k in e:
            e[k] += u[k]
    return out


class App(LineProcess):
    """pools.py KIND under the test's control."""

    def __init__(self, kind, dsn):
        super().__init__([PYTHON, POOLS, kind, dsn], "pools.py")

    def cmd(self, line):
        return self.send(line)

    def report(self):
        """{conn address: what the client's libpq says of it}."""
        return {c["conn"]: c for c in json.loads(self.cmd("report"))}



class PoolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = PgServer()
        cls.server.start()
        cls.dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres application_name=pools" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def server_states(self):
        """pg_stat_activity's state by backend pid, for the app's connections."""
        out = self.server.psql("select pid, state from pg_stat_activity where application_name = 'pools'")
        states = {}
        for line in out.splitlines():
            if "|" in line:
                pid, state = line.split("|", 1)
                states[int(pid)] = state
        return states

    def start(self, kind, extra=()):
        app = App(kind, self.dsn)
        self.addCleanup(app.cleanup)
        t = Tracer.attach([app.pid], leak_after=LEAK_AFTER, interval=0.3, extra=["--top", "20"] + list(extra))
        self.addCleanup(t.cleanup)
        t.wait_attached()
        return app, t

    def settle(self, t, app, pred, what):
        """The first snapshot after the app's last command where pred(process)
        holds (connleak's state lags the app by up to an interval)."""
        snap = t.wait_snapshot(lambda s: (find_process(s, app.pid) is not None and pred(find_process(s, app.pid))),
                               timeout=60)
        proc = find_process(snap or {}, app.pid)
        self.assertTrue(proc is not None and pred(proc), "%s never held:\n%s\n%s" % (what, dump(snap), t.describe()))
        return snap, proc

    def check_states(self, app, proc, n_live):
        """Every live handle: connleak's state/backend_pid/database/user are
        the client's own view and the server's."""
        client = app.report()
        server = self.server_states()
        conns = {c["conn"]: c for c in proc["connections"]}
        self.assertEqual(sorted(conns), sorted(client), dump(proc))
        self.assertEqual(len(conns), n_live)
        for addr, mine in client.items():
            c = conns[addr]
            ctx = "%s: connleak %s, client %s" % (addr, dump(c), mine)
            self.assertEqual(c["state"], XACT_STATE[mine["xact"]], ctx)
            self.assertEqual(c["backend_pid"], mine["backend_pid"], ctx)
            self.assertEqual(c["database"], mine["database"], ctx)
            self.assertEqual(c["user"], mine["user"], ctx)
            self.assertEqual(c["database"], "postgres", ctx)
            self.assertEqual(c["user"], "postgres", ctx)
            self.assertTrue(c["pooled"], ctx)
            self.assertEqual(server.get(c["backend_pid"]), SERVER_STATE[c["state"]], ctx)
            self.assertEqual(c["leak"], c["state"] in ("in_transaction", "in_error"), ctx)
            if c["leak"]:  # charged to its borrower: the route that began its open transaction
                self.assertIn(function(c.get("last_used_site", "(none)")), ("leaky_route", "failing_route",
                                                                          "orphan_route"), ctx)
        return conns

    def leaks_and_idle(self, kind, n_trans, n_error, m_healthy, live=None, extra=()):
        """n_trans + n_error checkouts leaked after a query (n_error of them
        after a failed one), m_healthy given back: leaks are exactly the
        leaked checkouts. `live`: how many handles there are then (None:
        as many as the app reports; psycopg_pool grows in the background)."""
        k = n_trans + n_error
        app, t = self.start(kind, extra)
        app.cmd("open")
        app.cmd("leak %d" % n_trans)
        for _ in range(n_error):
            app.cmd("fail")
        app.cmd("healthy %d" % m_healthy)
        if live is None:
            live = len(app.report())
        snap, proc = self.settle(t, app, lambda p: p["leaks"] == k and p["active"] == live,
                                 "%d leaks of %d live" % (k, live))
        conns = self.check_states(app, proc, live)
        states = [c["state"] for c in conns.values()]
        self.assertEqual(states.count("in_transaction"), n_trans, dump(proc))
        self.assertEqual(states.count("in_error"), n_error, dump(proc))
        self.assertEqual(states.count("idle"), live - k, dump(proc))
        self.assertGreaterEqual(live - k, m_healthy)
        want = {"idle": live - k, "in_error": n_error, "in_transaction": n_trans}
        self.assertEqual(proc["states"], {s: n for s, n in want.items() if n}, dump(proc))
        self.assertEqual(snap["tracking_stats"]["total_leaks"], k)
        leak_notices = [n for n in snap["notices"] if n["kind"] == "leak" and n["pid"] == app.pid]
        self.assertEqual(len(leak_notices), k, dump(snap["notices"]))
        self.assertTrue(all(n["pooled"] for n in leak_notices))
        self.assertIn("in a transaction for", t.stderr)
        self.assertIn("never returned", t.stderr)
        self.check_last_users(t, app, n_trans, n_error, m_healthy, live)
        # The idle ones stay healthy however long they sit in the pool.
        time.sleep(LEAK_AFTER * 2)
        snap = t.wait_snapshot(lambda s: True)
        proc = find_process(snap, app.pid)
        self.assertEqual(proc["leaks"], k, dump(proc))
        return app, t, proc

    def check_last_users(self, t, app, n_trans, n_error, m_healthy, live):
        """Per last user: leaky_route holds its n_trans checkouts and is
        charged their leaks, failing_route its n_error; healthy_route's m
        are back in the pool (not checked out, no leaks); handles the pool
        made and nobody used have no known last user. Cross-checked with
        pg_stat_activity, backend by backend."""
        want = {"leaky_route": {"connections": n_trans, "pooled": n_trans, "checked_out": n_trans, "leaks": n_trans},
                "healthy_route": {"connections": m_healthy, "pooled": m_healthy, "checked_out": 0, "leaks": 0}}
        if n_error:
            want["failing_route"] = {"connections": n_error, "pooled": n_error, "checked_out": n_error,
                                     "leaks": n_error}

        def expected(p):
            """`want`, and the handles the pool made that nobody used yet
            (psycopg_pool grows in the background)."""
            unused = p["active"] - n_trans - n_error - m_healthy
            return dict(want, **({None: {"connections": unused, "pooled": unused, "checked_out": 0, "leaks": 0}}
                                 if unused else {}))
        # The last users' stacks arrive by the ring buffer: await the exact table.
        snap, proc = self.settle(t, app, lambda p: by_route(p["last_users"]) == expected(p),
                                 "last users %s" % want)
        self.assertGreaterEqual(proc["active"], live)
        self.assertEqual(proc["last_users_total"], len(proc["last_users"]), dump(proc))
        # Per site (top_connection_users, and so /metrics and /health), each
        # pooled leak is its borrower's: the rows with leaks are exactly the
        # leaking handles' last users, never the site where the pool made them.
        borrowed = {}
        for c in proc["connections"]:
            if c["leak"]:
                borrowed[c["last_used_site"]] = borrowed.get(c["last_used_site"], 0) + 1
        charged = {s["site"]: s["leaks"] for s in proc["top_connection_users"] if s["leaks"]}
        self.assertEqual(charged, borrowed, dump(proc["top_connection_users"]))
        self.assertEqual(sum(borrowed.values()), n_trans + n_error)
        self.assertEqual(snap["last_users"], proc["last_users"], "one traced process: the totals are its own")
        # Worst first: leaks, then checked out, then connections.
        ranks = [(u["leaks"], u["checked_out"], u["connections"]) for u in proc["last_users"]]
        self.assertEqual(ranks, sorted(ranks, reverse=True), dump(proc["last_users"]))
        self.assertIn(route_of(proc["last_users"][0]["frames"]), ("leaky_route", "failing_route"))
        # The server agrees, backend by backend: what each last user holds
        # checked out is in a transaction there, the rest idle.
        server = self.server_states()
        route_of_conn = {c["backend_pid"]: route_of(c["last_used_frames"]) for c in proc["connections"]}
        want_server = {"leaky_route": "idle in transaction", "failing_route": "idle in transaction (aborted)",
                       "healthy_route": "idle", None: "idle"}
        for backend, route in route_of_conn.items():
            self.assertEqual(server.get(backend), want_server[route], "backend %s of %s: %s" % (backend, route,
                                                                                                 dump(proc)))
        mine = {c["backend_pid"] for c in app.report().values()}  # another app of the test may run beside
        in_xact = [b for b, st in server.items() if b in mine and st.startswith("idle in transaction")]
        self.assertEqual(len(in_xact), sum(u["checked_out"] for u in proc["last_users"]), server)

    def test_psycopg2_threaded_pool(self):
        # ThreadedConnectionPool(2, 8): 2 made at open, taken by the first
        # leaks; the 2 healthy ones go back and stay (minconn 2).
        self.leaks_and_idle("psycopg2", 3, 1, 2, live=6)

    def test_sqlalchemy_queue_pool(self):
        # QueuePool(5, 10): made as needed; the healthy ones are returned
        # and kept. (SQLAlchemy 1.4 rolls a failed statement back itself:
        # no in_error checkout here.)
        self.leaks_and_idle("sqlalchemy", 4, 0, 3, live=7)

    def test_psycopg_pool(self):
        self.leaks_and_idle("psycopg_pool", 3, 1, 2)

    def test_pool_frame_names_a_pool_connleak_does_not_know(self):
        # MiniPool (pools.py) is no known pool: its idle handles are held
        # for good, every one a leak by age.
        app, t = self.start("mini")
        app.cmd("open")
        app.cmd("leak 1")
        app.cmd("healthy 2")
        snap, proc = self.settle(t, app, lambda p: p["leaks"] == 3 and p["active"] == 3, "3 leaks by age")
        self.assertFalse(any(c["pooled"] for c in proc["connections"]), dump(proc))
        # With --pool-frame: only the checkout kept in a transaction leaks.
        _, _, proc = self.leaks_and_idle("mini", 1, 1, 2, live=4, extra=["--pool-frame", r"^MiniPool\."])
        self.assertTrue(all(c["pooled"] for c in proc["connections"]), dump(proc))

    def test_sqlalchemy_checkout_recovered_by_gc_is_released(self):
        app, t = self.start("sqlalchemy")
        app.cmd("open")
        app.cmd("orphan")
        snap, proc = self.settle(t, app, lambda p: p["leaks"] == 1, "the orphan's leak")
        conn = [c for c in proc["connections"] if c["leak"]][0]
        self.assertEqual(conn["state"], "in_transaction")
        app.cmd("gc")  # SQLAlchemy's finalizer rolls it back into the pool
        snap = t.wait_snapshot(lambda s: any(n["kind"] == "released" and n["conn"] == conn["conn"]
                                             for n in s["notices"]), timeout=60)
        proc = find_process(snap, app.pid)
        self.assertEqual(proc["leaks"], 0, dump(snap))
        released = [n for n in snap["notices"] if n["kind"] == "released" and n["conn"] == conn["conn"]]
        self.assertEqual(len(released), 1, dump(snap["notices"]))
        self.assertTrue(released[0]["pooled"])
        self.assertEqual(proc["connections"][0]["state"], "idle")
        self.assertEqual(self.server_states()[conn["backend_pid"]], "idle")
        self.assertIn("is back", t.stderr)

    def test_psycopg_pool_checkout_closed_by_refcount_loses_a_slot(self):
        app, t = self.start("psycopg_pool")
        app.cmd("open")
        app.cmd("orphan")
        snap, proc = self.settle(t, app, lambda p: p["states"].get("in_transaction") == 1, "the orphan borrowed")
        backend = [c for c in proc["connections"] if c["state"] == "in_transaction"][0]["backend_pid"]
        app.cmd("drop")  # refcounting finishes it: the pool never gets it back
        snap, proc = self.settle(t, app, lambda p: p["pool_slots_lost"] == 1, "a pool slot lost")
        self.assertEqual(proc["active"], len(app.report()), dump(proc))
        self.assertEqual(sum(s["pool_slots_lost"] for s in proc["top_connection_users"]), 1, dump(proc))
        self.assertNotIn(backend, self.server_states())

    def test_busy_and_broken_are_the_clients_view(self):
        app, t = self.start("psycopg2")
        app.cmd("open")
        app.cmd("busy")
        app.cmd("broken")
        snap, proc = self.settle(t, app, lambda p: p["states"].get("busy") == 1 and p["states"].get("broken") == 1,
                                 "one busy, one broken")
        client = app.report()
        conns = {c["conn"]: c for c in proc["connections"]}
        server = self.server_states()
        busy = [c for c in conns.values() if c["state"] == "busy"][0]
        broken = [c for c in conns.values() if c["state"] == "broken"][0]
        self.assertEqual(client[busy["conn"]]["xact"], 1)  # PQTRANS_ACTIVE
        self.assertEqual(busy["backend_pid"], client[busy["conn"]]["backend_pid"])
        self.assertEqual(server[busy["backend_pid"]], "active")
        self.assertEqual(client[broken["conn"]]["status"], 1)  # CONNECTION_BAD
        self.assertEqual(client[broken["conn"]]["xact"], 4)  # PQTRANS_UNKNOWN
        self.assertIsNone(broken["backend_pid"])  # PQbackendPID() says 0
        self.assertFalse(busy["leak"] or broken["leak"], dump(proc))  # not in a transaction

    def test_bad_pool_frame_is_a_usage_error(self):
        p = subprocess.run([CONNLEAK, "--pool-frame", "(", "-p", str(os.getpid())], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertTrue(p.stderr.startswith("connleak: --pool-frame (: "), p.stderr)
        self.assertEqual(p.stderr.count("\n"), 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
