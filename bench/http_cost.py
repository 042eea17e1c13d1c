"""--http's cost (make bench, section "http"):

- format + serve: bench/http_bench serves a synthetic snapshot of 1,000
  processes x 10 sites through connleak's own HttpService on a loopback port
  and times GET /metrics (and the other pages) with cpp-httplib's client: the
  first request of a snapshot (which renders it) and the next (cached), and
  what publishing a snapshot costs the report loop;
- tracing cost while scraped: connleak --http -- pqstress (PQconnectStart +
  PQfinish cycles in A/B blocks, probed libpq vs an unprobed copy, as in the
  "cost" section), not scraped vs scraped every second (/metrics, /,
  /health/detailed, /snapshot.json), in alternating runs: the probes' added
  CPU time per cycle, connleak's own CPU time, and exact counts in both."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "pylib"))

from connleak_testkit import benchlib as bl  # noqa: E402
from connleak_testkit.pgserver import free_port  # noqa: E402
from connleak_testkit.snapshot import find_process, read_json  # noqa: E402


def format_cost(build, procs=1000, sites=10, rounds=5):
    exe = os.path.join(build, "bench", "http_bench")
    # SCHED_FIFO for these few seconds: on a machine shared with other work,
    # wall-clock times are then the program's own, not its wait for a CPU.
    p = subprocess.run(["chrt", "-f", "10", exe, str(procs), str(sites), str(rounds)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600)
    got = bl.tagged_json(p.stdout, "http_bench")
    if p.returncode != 0 or not got:
        raise RuntimeError("http_bench failed: %s" % p.stderr)
    return got[0]


class Scraper(threading.Thread):
    """GETs the four pages every `period` seconds until stopped."""

    def __init__(self, port, period=1.0):
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.stop_event = threading.Event()
        self.requests = self.failures = 0
        self.ms = []

    def run(self):
        while not self.stop_event.wait(self.period):
            for path in ("/metrics", "/", "/health/detailed", "/snapshot.json"):
                t0 = time.monotonic()
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=10) as r:
                        r.read()
                    self.requests += 1
                    if path == "/metrics":
                        self.ms.append((time.monotonic() - t0) * 1000)
                except OSError:
                    self.failures += 1  # 503 before the first snapshot, or connleak gone


def one_run(tools, tmp, libpq_copy, n, scraped, tag):
    port = free_port()
    json_path = os.path.join(tmp, "http-%s.json" % tag)
    cmd = bl.connleak_cmd(tools, json_path, interval=1, extra=["--http", "127.0.0.1:%d" % port]) + [
        "--", tools.pqstress, "-n", n, "-B", libpq_copy, "-b", 50]
    mon = bl.Monitored(cmd, tmp, name="http-" + tag)
    scraper = Scraper(port) if scraped else None
    if scraper:
        scraper.start()
    rc = mon.wait(600)
    if scraper:
        scraper.stop_event.set()
        scraper.join(30)
    ab = [x for x in bl.tagged_json(mon.stdout(), "pqstress") if x["role"] == "ab"]
    if rc != 0 or not ab:
        raise RuntimeError("http run %s failed\n%s" % (tag, mon.describe()))
    ab = ab[0]
    p = find_process(read_json(json_path, torn_as_none=True), ab["pid"]) or {}
    want = ab["probed_cycles"]
    return {"added_cpu_ns": ab["added_cpu_ns_per_cycle"], "connleak_cpu_s": mon.cpu_s, "wall_s": mon.wall_s,
            "exact": (p.get("acquired"), p.get("released"), p.get("dropped")) == (want, want, 0),
            "scrapes": scraper.requests if scraper else 0,
            "scrape_metrics_ms": bl.summary(scraper.ms) if scraper else None}


def measure(tools, tmp, quick=False, cycles=None, rounds=None):
    res = {"format": format_cost(tools.build_dir, rounds=3 if quick else 5)}
    libpq_copy = os.path.join(tmp, "libpq-http-copy", "libpq.so.5")
    os.makedirs(os.path.dirname(libpq_copy), exist_ok=True)
    shutil.copyfile(os.path.realpath(bl.system_libpq()), libpq_copy)
    n = cycles or (4000 if quick else 20000)
    rounds = rounds or (3 if quick else 7)
    runs = {"idle": [], "scraped": []}
    for r in range(rounds):
        order = ("idle", "scraped") if r % 2 == 0 else ("scraped", "idle")
        for cond in order:
            runs[cond].append(one_run(tools, tmp, libpq_copy, n, cond == "scraped", "%s-%d" % (cond, r)))
    res["scraping"] = {
        "method": "connleak --http -- pqstress (%d PQconnectStart+PQfinish cycles, A/B blocks of 50), "
                  "not scraped vs scraped every second (4 pages), %d alternating rounds" % (n, rounds),
        "cycles_per_run": n, "rounds": rounds,
        "added_cpu_ns": {c: bl.summary([x["added_cpu_ns"] for x in runs[c]]) for c in runs},
        "connleak_cpu_s": {c: bl.summary([x["connleak_cpu_s"] for x in runs[c]]) for c in runs},
        "wall_s": {c: bl.summary([x["wall_s"] for x in runs[c]]) for c in runs},
        "scrapes_per_run": bl.summary([x["scrapes"] for x in runs["scraped"]]),
        "scrape_metrics_ms": [x["scrape_metrics_ms"] for x in runs["scraped"]],
        "counts_exact": all(x["exact"] for c in runs for x in runs[c]),
    }
    s = res["scraping"]
    s["added_cpu_ratio_scraped_vs_idle"] = (s["added_cpu_ns"]["scraped"]["median"] /
                                            s["added_cpu_ns"]["idle"]["median"])
    return res


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                    "build"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cycles", type=int, default=None, help="cycles per pqstress run (default 20000)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 7)")
    args = ap.parse_args()
    tmp = bl.make_tmpdir()
    try:
        print(json.dumps(measure(bl.Tools(args.build), tmp, args.quick, args.cycles, args.rounds), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
