"""Python clients for connleak's tests: python3 scripts.py MODE DSN [N]."""
import os
import sys
import time


def psycopg3_leak(dsn, n):
    import psycopg
    held = []
    for _ in range(n):
        held.append(psycopg.connect(dsn + " application_name=t_py_pg3"))  # MARK:pg3
    print("ready", flush=True)
    sys.stdin.readline()


def exit_right_after(dsn, n):
    import psycopg2
    conn = psycopg2.connect(dsn + " application_name=t_py_exit")  # MARK:exit
    os._exit(0)


def recurse(depth, dsn):
    import psycopg2
    if depth:
        return recurse(depth - 1, dsn)
    return psycopg2.connect(dsn + " application_name=t_py_deep")  # MARK:deep


def deep(dsn, n):
    held = [recurse(60, dsn) for _ in range(n)]
    print("ready", flush=True)
    sys.stdin.readline()
    del held


if __name__ == "__main__":
    time.sleep(1)  # connleak looks at a new process within 100 ms (more on a busy machine)
    mode, dsn = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    {"psycopg3": psycopg3_leak, "exit": exit_right_after, "deep": deep}[mode](dsn, n)
