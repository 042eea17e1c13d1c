"""Real pools for test_pools: one process, one pool, driven line by line on
stdin, each reply one line on stdout ("ok ..." or a JSON list).

    pools.py KIND DSN      KIND: psycopg2 (ThreadedConnectionPool(2, 8)),
                                 sqlalchemy (QueuePool(5, 10)), psycopg_pool,
                                 mini (MiniPool below: a pool connleak does
                                 not know, for --pool-frame)

Commands:
    open          create the pool (its first connections)
    leak N        N checkouts that run a query and are never given back
    fail          one checkout whose query fails, never given back (in_error)
    healthy M     M checkouts at once, each runs a query, all given back
    orphan        one checkout that runs a query, kept only in a reference
                  cycle (sqlalchemy) or in a list `drop` empties (psycopg_pool)
    drop          drop the orphan's last plain reference (psycopg_pool:
                  refcounting closes it; sqlalchemy: the cycle remains)
    gc            gc.collect() (automatic collection is off)
    busy          one checkout running pg_sleep(30) in a thread (psycopg2)
    broken        one checkout whose backend is terminated, then used (psycopg2)
    report        every connection the pool and the app hold, as the client
                  sees it: PQtransactionStatus and PQbackendPID via the driver
    exit
"""
import gc
import json
import os
import sys

KIND, DSN = sys.argv[1], sys.argv[2]
gc.disable()  # an orphan in a cycle is recovered when the test says so

# libpq mapped before "ready", so connleak can attach to it.
if KIND == "psycopg_pool":
    import psycopg  # noqa: F401
else:
    import psycopg2  # noqa: F401

held = []     # leaked checkouts: the application keeps them, never returns them
orphans = []  # psycopg_pool: closed by refcounting on `drop`
pool = None


class MiniPool:
    """The smallest pool: made on demand, kept when given back."""

    def __init__(self, dsn):
        import psycopg2
        self.connect = lambda: psycopg2.connect(dsn)
        self._pool = []

    def getconn(self):
        return self._pool.pop() if self._pool else self.connect()

    def putconn(self, conn):
        conn.rollback()
        self._pool.append(conn)


def raw(conn):
    """The driver connection under a checkout."""
    if KIND == "sqlalchemy":
        return conn.connection.dbapi_connection
    return conn


def describe(c):
    """What libpq's own accessors say (psycopg2 and psycopg call them)."""
    if KIND == "psycopg_pool":
        ptr = c.pgconn.pgconn_ptr
    else:
        ptr = c.pgconn_ptr
    return {"conn": "0x%x" % ptr, "xact": int(c.info.transaction_status), "status": int(c.info.status),
            "backend_pid": c.info.backend_pid, "database": c.info.dbname, "user": c.info.user}


def open_pool():
    global pool
    if KIND == "psycopg2":
        from psycopg2.pool import ThreadedConnectionPool
        pool = ThreadedConnectionPool(2, 8, DSN)
    elif KIND == "sqlalchemy":
        import psycopg2
        from sqlalchemy import create_engine
        pool = create_engine("postgresql+psycopg2://", creator=lambda: psycopg2.connect(DSN), pool_size=5,
                             max_overflow=10)
    elif KIND == "mini":
        pool = MiniPool(DSN)
    else:
        from psycopg_pool import ConnectionPool
        pool = ConnectionPool(DSN, min_size=2, max_size=8)
        pool.wait()


def checkout():
    if KIND in ("psycopg2", "psycopg_pool", "mini"):
        return pool.getconn()
    return pool.connect()


def give_back(conn):
    if KIND == "sqlalchemy":
        conn.close()
    else:
        pool.putconn(conn)


def query(conn, sql="select 1"):
    if KIND == "sqlalchemy":
        from sqlalchemy import text
        conn.execute(text(sql))
    elif KIND == "psycopg_pool":
        conn.execute(sql)
    else:
        conn.cursor().execute(sql)


def leaky_route():
    conn = checkout()
    query(conn)
    held.append(conn)  # never given back


def failing_route():
    conn = checkout()
    try:
        query(conn, "select 1/0")
    except Exception:
        pass
    held.append(conn)


def healthy_route(m):
    conns = [checkout() for _ in range(m)]
    for c in conns:
        query(c)
    for c in conns:
        give_back(c)


def orphan_route():
    conn = checkout()
    query(conn)
    if KIND == "sqlalchemy":
        cycle = [conn]
        cycle.append(cycle)  # only the garbage collector can free it
    else:
        orphans.append(conn)


def busy_route():
    import threading
    conn = checkout()
    held.append(conn)
    threading.Thread(target=lambda: query(conn, "select pg_sleep(30)"), daemon=True).start()


def broken_route():
    conn = checkout()
    held.append(conn)
    killer = checkout()
    query(killer, "select pg_terminate_backend(%d)" % conn.info.backend_pid)
    killer.commit()
    give_back(killer)
    try:
        query(conn)
    except Exception:
        pass  # the server is gone: libpq's status is CONNECTION_BAD


def everything():
    conns = [raw(c) for c in held] + [raw(c) for c in orphans]
    if KIND in ("psycopg2", "mini"):
        conns += list(pool._pool)
    elif KIND == "sqlalchemy":
        conns += [rec.dbapi_connection for rec in list(pool.pool._pool.queue) if rec.dbapi_connection is not None]
    else:
        conns += list(pool._pool)
    return [describe(c) for c in conns]


print("ready pid=%d" % os.getpid(), flush=True)
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    cmd, args = words[0], [int(w) for w in words[1:]]
    if cmd == "open":
        open_pool()
    elif cmd == "leak":
        for _ in range(args[0]):
            leaky_route()
    elif cmd == "fail":
        failing_route()
    elif cmd == "healthy":
        healthy_route(args[0])
    elif cmd == "orphan":
        orphan_route()
    elif cmd == "drop":
        orphans.clear()
    elif cmd == "busy":
        busy_route()
    elif cmd == "broken":
        broken_route()
    elif cmd == "gc":
        gc.collect()
    elif cmd == "report":
        print(json.dumps(everything()), flush=True)
        continue
    elif cmd == "exit":
        break
    print("ok " + cmd, flush=True)
