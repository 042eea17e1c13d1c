"""One psycopg2 ThreadedConnectionPool holding one connection, borrowed in
turn by two functions (test_last_user.py). Obeys lines on stdin, one reply
line each on stdout:

    a         -> borrower_a borrows, queries, gives back: "done a backend=PID t0=T t1=T"
    b         -> borrower_b the same
    ab        -> borrower_a then borrower_b at once (microseconds apart)
    hold      -> borrower_a borrows, queries and keeps it in a transaction
    exit / EOF

t0: CLOCK_MONOTONIC before the borrow, t1: after the connection was given
back (no traffic on it after t1)."""
import os
import sys
import time

import psycopg2.pool

held = []


def borrower_a(pool):
    conn = pool.getconn()
    with conn.cursor() as cur:
        cur.execute("select 'a'")  # MARK:a
        cur.fetchall()
    pool.putconn(conn)
    return conn


def borrower_b(pool):
    conn = pool.getconn()
    with conn.cursor() as cur:
        cur.execute("select 'b'")  # MARK:b
        cur.fetchall()
    pool.putconn(conn)
    return conn


def holder(pool):
    conn = pool.getconn()
    with conn.cursor() as cur:
        cur.execute("select 'held'")  # MARK:hold
        cur.fetchall()
    held.append(conn)  # never given back: in a transaction
    return conn


def main():
    pool = psycopg2.pool.ThreadedConnectionPool(1, int(os.environ.get("POOL_MAX", "1")), os.environ["APP_DSN"])
    print("ready pid=%d" % os.getpid(), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "exit":
            break
        t0 = time.monotonic()
        if cmd == "a":
            conn = borrower_a(pool)
        elif cmd == "b":
            conn = borrower_b(pool)
        elif cmd == "ab":
            borrower_a(pool)
            conn = borrower_b(pool)
        elif cmd == "hold":
            conn = holder(pool)
        else:
            print("unknown command %r" % cmd, flush=True)
            sys.exit(2)
        t1 = time.monotonic()
        print("done %s backend=%d t0=%.6f t1=%.6f" % (cmd, conn.get_backend_pid(), t0, t1), flush=True)


if __name__ == "__main__":
    main()
