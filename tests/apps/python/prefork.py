"""A gunicorn-like pre-forking server, for connleak's whole-host tests.

    prefork.py CONNINFO APP WORKERS DIR [hold]

The master never loads libpq. It forks WORKERS workers; each imports
psycopg2 after the fork (so only the workers map libpq), says "ready", and
waits for DIR/go. Worker i then makes i+2 connections with
application_name APP_w<i>, closes all but the last (one leak; with hold,
closes none), prints
"done pid=P app=A acquired=N closed=C" (and writes it to DIR/done.P) and
waits for DIR/stop. The master
prints "master pid=P workers=W1,W2,..." once every worker is ready, and exits
when they have.
"""
import os
import sys
import time


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.02)


def worker(i, conninfo, app, d, ready_fd, hold):
    import psycopg2  # after the fork: the worker alone maps libpq
    os.write(ready_fd, b"r")
    os.close(ready_fd)
    wait_for(os.path.join(d, "go"))
    name = "%s_w%d" % (app, i)
    conns = [psycopg2.connect(conninfo + " application_name=" + name) for _ in range(i + 2)]
    closed = [] if hold else conns[:-1]
    for c in closed:
        c.close()
    line = "done pid=%d app=%s acquired=%d closed=%d\n" % (os.getpid(), name, len(conns), len(closed))
    # Also as DIR/done.PID, written whole then renamed: the test waits for
    # these files with a deadline (a line on the shared pipe once failed to
    # reach it, and it waited for good).
    tmp = os.path.join(d, ".done.%d" % os.getpid())
    with open(tmp, "w") as f:
        f.write(line)
    os.rename(tmp, os.path.join(d, "done.%d" % os.getpid()))
    sys.stdout.write(line)
    sys.stdout.flush()
    wait_for(os.path.join(d, "stop"))
    os._exit(0)


def main():
    conninfo, app, n, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    hold = sys.argv[5:] == ["hold"]
    pids = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            worker(i, conninfo, app, d, w, hold)
        os.close(w)
        os.read(r, 1)
        os.close(r)
        pids.append(pid)
    print("master pid=%d workers=%s" % (os.getpid(), ",".join(map(str, pids))), flush=True)
    for _ in pids:
        os.wait()


if __name__ == "__main__":
    main()
