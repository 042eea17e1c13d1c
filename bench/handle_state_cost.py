"""What reading each live handle's state costs connleak per interval (make
bench, section "handles"): a pqclient holds N connections; connleak,
attached with a short interval, reads each handle's four fields
(process_vm_readv) every interval, and its database and user once.
CONNLEAK_HANDLE_STATS=1 makes connleak print the reads and their mean
wall time and thread CPU time at exit (on a loaded machine the wall time
is mostly waiting for a core). The target is never stopped; its own cost is nil (no
probe, no signal), so only connleak's side is measured."""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pylib"))

from connleak_testkit.paths import PQCLIENT  # noqa: E402

STATS = re.compile(r"handle reads: (\d+), failed (\d+), ([\d.]+) us each, ([\d.]+) us CPU")


def one_run(connleak, dsn, n, seconds, interval):
    client = subprocess.Popen([PQCLIENT, "interactive", dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, bufsize=1)
    try:
        line = client.stdout.readline()
        assert line.startswith("ready"), line
        tmp = tempfile.mkdtemp(prefix="connleak-bench-handles-")
        json_path = os.path.join(tmp, "s.json")
        env = dict(os.environ, CONNLEAK_HANDLE_STATS="1")
        p = subprocess.Popen([connleak, "-q", "-i", str(interval), "-d", str(seconds), "--json", json_path,
                              "-p", str(client.pid)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        # Connect once attached (the first snapshot): handles made before
        # the attach are not tracked, so never read.
        deadline = time.monotonic() + 120
        while not os.path.exists(json_path):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else "slow"
            time.sleep(0.05)
        client.stdin.write("open %d\n" % n)
        client.stdin.flush()
        assert client.stdout.readline().startswith("ok open"), "open failed"
        _, err = p.communicate(timeout=seconds + 120)
        m = STATS.search(err)
        assert m, err
        return {"reads": int(m.group(1)), "failed": int(m.group(2)), "us_per_read": float(m.group(3)),
                "cpu_us_per_read": float(m.group(4))}
    finally:
        client.kill()
        client.wait()


def measure(connleak, dsn, n=200, seconds=8, interval=0.2, rounds=3):
    runs = [one_run(connleak, dsn, n, seconds, interval) for _ in range(rounds)]
    us = sorted(r["us_per_read"] for r in runs)
    cpu = sorted(r["cpu_us_per_read"] for r in runs)
    return {"handles": n, "interval_s": interval, "runs": runs, "us_per_handle_read_median": us[len(us) // 2],
            "cpu_us_per_handle_read_median": cpu[len(cpu) // 2],
            "ms_per_interval_median": cpu[len(cpu) // 2] * n / 1000.0}


if __name__ == "__main__":
    print(measure(sys.argv[1], sys.argv[2]))
