"""A test that hangs says where, before ctest kills it.

ctest kills a test at its TIMEOUT and prints nothing of where it stood. With
CONNLEAK_TEST_WATCHDOG=SECONDS (set by tests/CMakeLists.txt a little under
ctest's TIMEOUT), importing the kit arms a timer; when it fires it prints
every Python thread's stack, and for each process of ours (connleak, test
clients, PostgreSQL) its state, kernel wait channel and kernel stack, then
exits 1. One test hung once in CI without a trace (issue #13's note).
"""

import faulthandler
import os
import signal
import sys
import threading

_armed = False


def _processes():
    """(pid, state, wchan, cmdline) of every process but kernel threads."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            if not cmd:
                continue
            with open("/proc/%s/stat" % name) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%s/wchan" % name) as f:
                wchan = f.read().strip()
        except OSError:
            continue
        out.append((int(name), state, wchan, cmd))
    return sorted(out)


def _descendants(root):
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _kernel_stack(pid):
    lines = []
    try:
        for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
            with open("/proc/%d/task/%s/stack" % (pid, tid)) as f:
                lines.append("  thread %s:\n%s" % (tid, "".join("    " + l for l in f)))
    except OSError as e:
        lines.append("  (%s)" % e)
    return "".join(lines)


def _fire(seconds):
    err = sys.stderr
    err.write("\n=== connleak test watchdog: still running after %ss ===\n" % seconds)
    faulthandler.dump_traceback(file=err, all_threads=True)
    ours = ("connleak", "pqclient", "pqstress", "postgres", "stackclient", "forker", "python")
    for pid, state, wchan, cmd in _processes():
        if pid == os.getpid() or not any(w in cmd for w in ours):
            continue
        err.write("--- pid %d state %s wchan %s: %s\n" % (pid, state, wchan, cmd[:200]))
        if "connleak" in cmd.split(" ")[0] or state == "D":
            err.write(_kernel_stack(pid))
    err.flush()
    # What this test started would outlive it (a PostgreSQL on its port,
    # connleak with its probes) and trouble the tests after it.
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    pgserver = sys.modules.get(__package__ + ".pgserver")
    if pgserver:  # its servers run detached (pg_ctl start)
        pgserver._cleanup_all()
    os._exit(1)


def arm_from_env():
    global _armed
    seconds = os.environ.get("CONNLEAK_TEST_WATCHDOG")
    if _armed or not seconds:
        return
    _armed = True
    t = threading.Timer(float(seconds), _fire, args=(seconds,))
    t.daemon = True
    t.start()
