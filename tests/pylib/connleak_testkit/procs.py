"""Other processes seen through /proc: whether connleak's uprobes are in
place (test_attach.py, test_startup.py), which BPF links it holds
(test_last_user.py)."""

import os
import shutil
import subprocess


def private_libpq(parent):
    """A copy of the system's libpq in PARENT/lib, for LD_LIBRARY_PATH: a
    different file from the system's, so the probes other connleaks on the
    machine put on the system libpq never show in its code. Returns the dir."""
    d = os.path.join(parent, "lib")
    os.makedirs(d, exist_ok=True)
    system = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    path = next(l.split("=> ")[1].strip() for l in system.splitlines() if "libpq.so.5 " in l and "x86-64" in l)
    shutil.copy2(path, os.path.join(d, "libpq.so.5"))
    return d


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


class LineProcess:
    """A scripted child: prints "ready pid=N", then answers each line sent
    to it with one line (the tests' libpq and pool clients)."""

    def __init__(self, argv, what):
        self.what = what
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        line = self.popen.stdout.readline()
        assert line.startswith("ready pid="), (line, self.popen.stderr.read() if self.popen.poll() else "")
        self.pid = self.popen.pid

    def send(self, line):
        """LINE's answer, stripped; fails the test if the child died."""
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()
        reply = self.popen.stdout.readline()
        if not reply:
            end_process(self.popen)
            raise AssertionError("%s died on %r: %s" % (self.what, line, self.popen.stderr.read()))
        return reply.strip()

    def cleanup(self):
        end_process(self.popen)


def bpf_link_infos(pid):
    """The fdinfo of each BPF link fd of PID, as a dict of its fields
    (link_type, tp_name, attach_type, cgroup_id, ...)."""
    out = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, fd)) != "anon_inode:bpf_link":
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                out.append(dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line))
        except OSError:
            continue  # closed meanwhile
    return out


def bpf_links(pid):
    """(link_type, what) of each BPF link fd of PID, from /proc/PID/fdinfo:
    what is a raw tracepoint's tp_name, a cgroup link's attach_type, an
    iterator's target_name, else ""."""
    out = []
    for info in bpf_link_infos(pid):
        kind = info.get("link_type", "")
        what = info.get("tp_name") or info.get("attach_type") or info.get("target_name") or ""
        out.append((kind, what.strip()))
    return out
