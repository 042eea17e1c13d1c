"""Other processes seen through /proc: whether connleak's uprobes are in
place (test_attach.py, test_startup.py)."""

import subprocess


def code_byte(pid, function):
    """The first byte of libpq's FUNCTION as process PID sees it: 0xcc where
    the kernel placed a uprobe's breakpoint in that process."""
    with open("/proc/%d/maps" % pid) as f:
        maps = [l.split() for l in f if "libpq.so" in l]
    path = "/proc/%d/root%s" % (pid, maps[0][5])
    nm = subprocess.run(["nm", "-D", "--defined-only", path], stdout=subprocess.PIPE, text=True, check=True).stdout
    value = next(int(l.split()[0], 16) for l in nm.splitlines() if l.split()[-1] == function)
    # In these shared objects a function's value is its file offset.
    for m in maps:
        start, end = (int(x, 16) for x in m[0].split("-"))
        offset = int(m[2], 16)
        if "x" in m[1] and offset <= value < offset + (end - start):
            with open("/proc/%d/mem" % pid, "rb") as mem:
                mem.seek(start + value - offset)
                return mem.read(1)[0]
    raise AssertionError("%s of pid %d is in no executable mapping" % (function, pid))


def end_process(popen):
    """Kill POPEN if it still runs and reap it (a test's cleanup: never raises)."""
    if popen.poll() is None:
        popen.kill()
    try:
        popen.communicate(timeout=30)
    except Exception:
        pass
