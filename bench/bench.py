#!/usr/bin/python3
"""connleak's benchmarks: what tracing costs, and proof that no count is lost.

    bench/bench.py --build BUILD_DIR [--quick] [--only SECTION,...] [--out FILE]
    bench/bench.py --markdown [FILE]      # render a results.json as Markdown

Sections (all by default; see BENCHMARKS.md for what each measures):
    cost        per-event cost: PQconnectStart+PQfinish cycles, untraced, under
                no-op probes (the floor) and under connleak; the bare cost of a
                uprobe and uprobe+uretprobe on no-op functions (uprobe_floor)
    pgbench     pgbench -C -S against a throwaway PostgreSQL 15, untraced and
                traced, interleaved A/B pairs: throughput ratio
    exactness   200,000 lifecycles, 4 processes x 4 threads, leaks and pings:
                connleak's counts == the client's; maps too small: dropped > 0
    bystander   a socket/syscall/fork-heavy process that never uses libpq,
                with connleak attached to another process: its slowdown
    scale       1,000 traced processes holding 100,000 live handles: report
                build time, BPF map memory, connleak's RSS, exact counts;
                connleak --all: its host scan's cost, and the bystander's
                slowdown under it
    handles     connection state: connleak's time to read each live handle's
                state per interval (handle_state_cost.py)
    http        --http: /metrics of 1,000 processes x 10 sites (< 100 ms), and
                the tracing cost while scraped every second (http_cost.py)
    server      --server: the per-interval pg_stat_activity read with 1,000
                connections made before the attach (server_cost.py)
Footprint (connleak's peak RSS, CPU time, BPF map memory) is gathered from
every traced run. Prints a table; writes bench/results.json (--out).
Needs root. Traffic goes to 127.0.0.1 and Unix sockets only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "pylib"))

from connleak_testkit import benchlib as bl  # noqa: E402
from connleak_testkit.benchlib import summary  # noqa: E402
from connleak_testkit.snapshot import find_process, read_json  # noqa: E402

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"

SECTIONS = ("cost", "pgbench", "exactness", "bystander", "exited", "python", "http", "server", "handles", "scale")

GOALS = {
    "pgbench_ratio": 0.99,        # traced/untraced tps, median of pairs, >=
    "cost_vs_floor": 1.2,         # added per cycle / floor per cycle, <=
    "bystander_slowdown_pct": 1.0,  # <=
    "peak_rss_mb": 30.0,          # <=
}


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- context

class Ctx:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.tools = bl.Tools(args.build)
        self.tmp = bl.make_tmpdir()
        self.libpq = bl.system_libpq()
        self.footprints = []   # every connleak run: {"workload", peak_rss_kb, cpu_s, wall_s, cpu_percent}
        self.bpf_maps = None   # connleak's maps at default sizes
        self.our_pids = set()
        self.foreign = []      # uprobes on libpq seen from other processes

    def note_footprint(self, workload, mon):
        fp = mon.footprint()
        fp["workload"] = workload
        self.footprints.append(fp)

    def foreign_uprobes(self, within=None):
        """Uprobes on a libpq owned by processes other than ours: another
        connleak running on this machine makes "untraced" runs traced.
        within: only on files under this directory (our private copies)."""
        try:
            out = subprocess.run(["bpftool", "-j", "perf"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, timeout=30).stdout
            entries = json.loads(out or "[]")
        except (OSError, ValueError, subprocess.SubprocessError):
            return []
        return sorted({e["pid"] for e in entries
                       if e.get("fd_type", "").startswith("u") and "libpq" in e.get("filename", "")
                       and (within is None or e.get("filename", "").startswith(within + "/"))
                       and e.get("pid") not in self.our_pids})

    def check_foreign(self, where, within=None):
        pids = self.foreign_uprobes(within)
        if pids:
            self.foreign.append({"where": where, "pids": pids})
        return bool(pids)


def rotate(seq, k):
    k %= len(seq)
    return list(seq[k:]) + list(seq[:k])


def read_sysctl(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---------------------------------------------------------------- cost

def run_pqstress_cycles(ctx, cond, n, tag):
    """One A/B run of PQconnectStart+PQfinish cycles under condition cond:
    pqstress alternates blocks of cycles through its linked libpq (where the
    probes are) and through another copy of it (a different file: no probe),
    so probed - plain is what the probes add, measured side by side. The
    probed libpq is a private copy too (ctx.cost_libpq, found first through
    LD_LIBRARY_PATH): a connleak someone else runs on this machine probes
    the system's libpq, not these two files, and cannot make a run traced."""
    t = ctx.tools
    probed = ctx.cost_libpq
    client = ["env", "LD_LIBRARY_PATH=" + os.path.dirname(probed), t.pqstress, "-n", n, "-B", ctx.libpq_copy,
              "-b", 50]
    json_path = os.path.join(ctx.tmp, "cost-%s.json" % tag)
    if cond == "untraced":
        cmd = client
    elif cond == "connleak":
        cmd = bl.connleak_cmd(t, json_path, interval=1, extra=["--libpq", probed]) + ["--"] + client
    elif cond == "connleak_no_stacks":  # counts only: no stack copy, no ring buffer events
        cmd = bl.connleak_cmd(t, json_path, interval=1, extra=["--libpq", probed, "--stack-size", "0"]) + \
            ["--"] + client
    elif cond == "floor_points":       # no-op programs on all of connleak's probe points
        cmd = [t.uprobe_floor, "attach", probed] + connleak_points(ctx.finish_offset) + ["--"] + client
    elif cond == "floor_handles":      # no-op: PQconnectStart entry+return, PQfinish entry (as connleak probes it)
        cmd = [t.uprobe_floor, "attach", probed, "PQconnectStart:ret", finish_point(ctx.finish_offset),
               "--"] + client
    else:
        raise ValueError(cond)
    mon = bl.Monitored(cmd, ctx.tmp, name="cost-" + tag)
    ctx.our_pids.add(mon.pid)
    rc = mon.wait(600)
    ab = [x for x in bl.tagged_json(mon.stdout(), "pqstress") if x["role"] == "ab"]
    if rc != 0 or not ab:
        raise RuntimeError("cost run %s failed\n%s" % (cond, mon.describe()))
    ab = ab[0]
    res = {"added_cpu_ns": ab["added_cpu_ns_per_cycle"], "added_cpu_ns_block_median": ab["added_cpu_ns_per_cycle_median"],
           "added_wall_ns": ab["probed_wall_ns_per_cycle"] - ab["plain_wall_ns_per_cycle"],
           "plain_cpu_ns": ab["plain_cpu_ns_per_cycle"], "probed_cpu_ns": ab["probed_cpu_ns_per_cycle"]}
    if cond in ("connleak", "connleak_no_stacks"):
        if cond == "connleak":
            ctx.note_footprint("cost: %d PQconnectStart+PQfinish cycles" % n, mon)
        snap = read_json(json_path, torn_as_none=True)
        p = find_process(snap, ab["pid"]) or {}
        want = ab["probed_cycles"]
        res["exact"] = (p.get("acquired"), p.get("released"), p.get("dropped")) == (want, want, 0)
        res["stacks"] = {k: p.get(k) for k in ("stacks_unwound", "stacks_truncated", "dropped_stacks")}
    return res


def finish_point(offset):
    """PQfinish as connleak probes it: past its NULL test when it has one."""
    return "PQfinish+%d" % offset if offset else "PQfinish"


def connleak_points(offset):
    """connleak's probe points on libpq (userspace/loader/connleak_loader.cpp and
    socket_tracer.cpp), in uprobe_floor attach's notation."""
    return ["PQconnectdb:ret", "PQconnectdbParams:ret", "PQconnectStart:ret", "PQconnectStartParams:ret",
            "PQsetdbLogin:ret", "PQping:ret", "PQpingParams:ret", finish_point(offset), "PQreset", "PQresetStart",
            "PQconnectPoll"]


def finish_offset(libpq):
    """Offset in PQfinish of the first instruction after its `test %rdi,%rdi;
    je` prologue (where connleak probes it, as userspace/loader/connleak_loader.cpp finds
    it), or None if it does not start so."""
    try:
        nm = subprocess.run(["nm", "-D", libpq], stdout=subprocess.PIPE, text=True, timeout=30).stdout
        addr = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" PQfinish")), 16)
        dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--start-address=%#x" % addr,
                              "--stop-address=%#x" % (addr + 16), libpq],
                             stdout=subprocess.PIPE, text=True, timeout=30).stdout
    except (OSError, StopIteration, ValueError, subprocess.SubprocessError):
        return None
    insns = re.findall(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", dis, re.M)
    if len(insns) >= 3 and insns[0][1] == "test" and insns[0][2].startswith("%rdi,%rdi") and insns[1][1] == "je":
        return int(insns[2][0], 16) - addr
    return None


class BpfStats:
    """kernel.bpf_stats_enabled = 1 for a while, then back as it was."""
    path = "/proc/sys/kernel/bpf_stats_enabled"

    def __enter__(self):
        with open(self.path) as f:
            self.before = f.read().strip()
        with open(self.path, "w") as f:
            f.write("1")
        return self

    def __exit__(self, *exc):
        with open(self.path, "w") as f:
            f.write(self.before)
        return False


def bystander_accounted(ctx, idle_pid, iters):
    """What connleak's programs cost the bystander, as the kernel counts it:
    the run time of every connleak program during the bystander's run
    (bpf_stats_enabled: the scheduler hooks on its threads and forks, the
    socket hooks on its TCP and Unix connects), over the bystander's own CPU
    time. An upper bound: whatever else ran meanwhile is charged to it too.
    Steady where A/B timing drowns in a busy machine's noise."""
    t = ctx.tools
    json_path = os.path.join(ctx.tmp, "bystander-stats.json")
    with BpfStats():
        cl = bl.Monitored(bl.connleak_cmd(t, json_path, interval=1) + ["-p", idle_pid], ctx.tmp,
                          name="bystander-stats")
        ctx.our_pids.add(cl.pid)
        try:
            if not bl.wait_for(lambda: os.path.exists(json_path) or not cl.alive(), 60) or not cl.alive():
                raise RuntimeError("connleak -p did not attach\n" + cl.describe())
            before = {p["name"]: p for p in bl.bpf_progs_of(cl.pid)}
            by = subprocess.run([t.bystander, "-n", str(iters)], stdout=subprocess.PIPE, text=True, timeout=600)
            after = {p["name"]: p for p in bl.bpf_progs_of(cl.pid)}
        finally:
            cl.send_signal(signal.SIGINT)
            if cl.wait(60) is None:
                cl.kill()
    b = bl.tagged_json(by.stdout, "bystander")[0]
    progs = {}
    for name, a in sorted(after.items()):
        cnt = a.get("run_cnt", 0) - before.get(name, {}).get("run_cnt", 0)
        ns = a.get("run_time_ns", 0) - before.get(name, {}).get("run_time_ns", 0)
        if cnt:
            progs[name] = {"runs": cnt, "runs_per_iter": cnt / iters, "ns_per_run": ns / cnt, "ns": ns}
    ns = sum(v["ns"] for v in progs.values()) / iters
    return {"programs": progs, "bpf_ns_per_iter": ns, "cpu_ns_per_iter": b["cpu_ns_per_iter"],
            "overhead_pct": 100.0 * ns / b["cpu_ns_per_iter"]}


def bpf_prog_stats(ctx, n):
    """Average run time of each connleak program per hit, with the kernel's
    BPF statistics switched on for this one run (they cost a little, so the
    timed runs are made without them)."""
    t = ctx.tools
    json_path = os.path.join(ctx.tmp, "stats.json")
    mon = None
    with BpfStats():
        try:
            mon = bl.Monitored(bl.connleak_cmd(t, json_path, interval=1) + ["--", t.pqstress, "-n", n, "-a", "start",
                                                                               "-W", "-T", "120"],
                               ctx.tmp, name="progstats")
            ctx.our_pids.add(mon.pid)
            if not bl.wait_for(lambda: '"role":"total"' in mon.stdout() or not mon.alive(), 300):
                return None
            progs = {p["name"]: {"run_cnt": p.get("run_cnt", 0), "run_time_ns": p.get("run_time_ns", 0),
                                 "recursion_misses": p.get("recursion_misses"),
                                 "ns_per_run": p["run_time_ns"] / p["run_cnt"] if p.get("run_cnt") else None}
                     for p in bl.bpf_progs_of(mon.pid) if p.get("run_cnt")}
            tot = [x for x in bl.tagged_json(mon.stdout(), "pqstress") if x["role"] == "total"]
            if tot:
                os.kill(tot[0]["pid"], signal.SIGUSR1)
            mon.wait(120)
            return progs
        finally:
            if mon is not None and mon.alive():
                mon.kill()


def section_cost(ctx):
    n = 4000 if ctx.quick else 6000
    rounds = 3 if ctx.quick else 7
    floor_calls = 3000 if ctx.quick else 5000
    ctx.finish_offset = finish_offset(ctx.libpq)
    ctx.libpq_copy = os.path.join(ctx.tmp, "libpq-copy", "libpq.so.5")
    ctx.cost_libpq = os.path.join(ctx.tmp, "libpq-probed", "libpq.so.5")
    for path in (ctx.libpq_copy, ctx.cost_libpq):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(os.path.realpath(ctx.libpq), path)
    conds = ["untraced", "floor_points", "floor_handles", "connleak", "connleak_no_stacks"]
    per = {c: [] for c in conds}
    floor_rounds = []
    contaminated = []
    log("cost: %d rounds x %d conditions, each %d cycles in A/B blocks" % (rounds, len(conds), n))
    for r in range(rounds):
        foreign = ctx.check_foreign("cost round %d" % r, within=ctx.tmp)
        got = {}
        for c in rotate(conds, r):
            got[c] = run_pqstress_cycles(ctx, c, n, "%s-%d" % (c, r))
        out = subprocess.run([ctx.tools.uprobe_floor, "self", "-n", str(floor_calls), "-r", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError("uprobe_floor self failed: " + out.stderr)
        floor_rounds.append(json.loads(out.stdout))
        foreign = ctx.check_foreign("cost round %d" % r, within=ctx.tmp) or foreign
        contaminated.append(foreign)
        for c in conds:
            per[c].append(got[c])
    clean = [i for i in range(rounds) if not contaminated[i]] or list(range(rounds))

    def fl(fn, probe, key="added_cpu_ns"):
        return [floor_rounds[i]["functions"][fn][probe][key][0] for i in clean]

    res = {"method": "A/B blocks of 50 cycles: a private copy of libpq (probed) vs another (unprobed), CPU time",
           "cycles_per_run": n, "rounds": rounds, "rounds_used": len(clean),
           "rounds_with_foreign_uprobes": sum(contaminated), "floor_calls": floor_calls,
           "pqfinish_probe_offset": ctx.finish_offset, "conditions": {}}
    for c in conds:
        res["conditions"][c] = {k: summary([per[c][i][k] for i in clean])
                                for k in ("added_cpu_ns", "added_cpu_ns_block_median", "added_wall_ns",
                                          "plain_cpu_ns")}
    res["connleak_stacks"] = [per["connleak"][i].get("stacks") for i in clean]
    res["connleak_counts_exact"] = all(x.get("exact") for c in ("connleak", "connleak_no_stacks") for x in per[c])
    floor = {
        "uprobe_push_ns": summary(fl("floor_push", "uprobe")),
        "uprobe_uretprobe_push_ns": summary(fl("floor_push", "uprobe_uretprobe")),
        "uprobe_test_ns": summary(fl("floor_test", "uprobe")),
        "uprobe_uretprobe_test_ns": summary(fl("floor_test", "uprobe_uretprobe")),
        "uprobe_push_wall_ns": summary(fl("floor_push", "uprobe", "added_wall_ns")),
        "uprobe_uretprobe_push_wall_ns": summary(fl("floor_push", "uprobe_uretprobe", "added_wall_ns")),
    }
    # The least a handle tracer can hit per cycle: entry + return of
    # PQconnectStart (starts `push %rbp`) and the entry of PQfinish, probed
    # past its `test %rdi,%rdi; je` on a `push %rbp` too (else on the test,
    # single-stepped), each measured on a no-op function starting alike.
    finish_kind = "floor_push" if ctx.finish_offset else "floor_test"

    def cycle_floor(i):
        f = floor_rounds[i]["functions"]
        return f["floor_push"]["uprobe_uretprobe"]["added_cpu_ns"][0] + f[finish_kind]["uprobe"]["added_cpu_ns"][0]

    floor["cycle_floor_ns"] = summary([cycle_floor(i) for i in clean])
    floor["cycle_floor_finish_probe"] = "push" if ctx.finish_offset else "test"
    res["floor"] = floor
    # Ratios per round (numerator and floor measured minutes apart drift
    # together), then their median.
    res["ratio_per_round_vs_cycle_floor"] = summary(
        [per["connleak"][i]["added_cpu_ns"] / cycle_floor(i) for i in clean])
    res["ratio_per_round_no_stacks_vs_cycle_floor"] = summary(
        [per["connleak_no_stacks"][i]["added_cpu_ns"] / cycle_floor(i) for i in clean])
    # What the goal leaves for connleak's own work: no-op programs on the
    # three points a handle tracer cannot do without, on the real libpq,
    # already cost this much of the cycle floor (measured on no-op functions).
    res["ratio_per_round_handles_floor_vs_cycle_floor"] = summary(
        [per["floor_handles"][i]["added_cpu_ns"] / cycle_floor(i) for i in clean])
    res["ratio_per_round_vs_points_floor"] = summary(
        [per["connleak"][i]["added_cpu_ns"] / per["floor_points"][i]["added_cpu_ns"] for i in clean])
    res["clean"] = sum(contaminated) < rounds
    conn_added = res["conditions"]["connleak"]["added_cpu_ns"]["median"]
    res["connleak_added_cpu_ns"] = conn_added
    res["ratio_vs_cycle_floor"] = conn_added / floor["cycle_floor_ns"]["median"]
    res["connleak_no_stacks_added_cpu_ns"] = res["conditions"]["connleak_no_stacks"]["added_cpu_ns"]["median"]
    res["ratio_no_stacks_vs_cycle_floor"] = res["connleak_no_stacks_added_cpu_ns"] / floor["cycle_floor_ns"]["median"]
    res["ratio_vs_points_floor"] = conn_added / res["conditions"]["floor_points"]["added_cpu_ns"]["median"]
    res["ratio_vs_one_uprobe_uretprobe"] = conn_added / floor["uprobe_uretprobe_push_ns"]["median"]
    log("cost: BPF program run time per hit (bpf_stats_enabled, one extra run)")
    res["bpf_prog_ns_per_run"] = bpf_prog_stats(ctx, 10000)
    return res


# ---------------------------------------------------------------- pgbench

def section_pgbench(ctx):
    from connleak_testkit.pgserver import PgServer
    pairs = ctx.args.pgbench_pairs or (2 if ctx.quick else 5)
    duration = ctx.args.pgbench_seconds or (3 if ctx.quick else 6)
    clients, threads = 2, 2
    server = PgServer().start()
    try:
        env = server.env()
        init = subprocess.run([PGBENCH, "-i", "-s", "1", "-q"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        if init.returncode != 0:
            raise RuntimeError("pgbench -i failed:\n" + init.stdout)
        base = [PGBENCH, "-n", "-C", "-S", "-T", str(duration), "-c", str(clients), "-j", str(threads)]

        with open(os.path.join(server.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())

        def run(mode, tag):
            app = "bench_%s" % tag
            e = server.env(app)
            mark = server.log_mark()
            server_cpu0 = bl.process_cpu_s(postmaster)
            json_path = os.path.join(ctx.tmp, "pgbench-%s.json" % tag)
            cmd = base if mode == "untraced" else bl.connleak_cmd(ctx.tools, json_path, interval=1) + ["--"] + base
            mon = bl.Monitored(cmd, ctx.tmp, name="pgbench-" + tag, env=e)
            ctx.our_pids.add(mon.pid)
            rc = mon.wait(duration + 120)
            out = mon.stdout()
            m = re.search(r"^tps = ([0-9.]+)", out, re.M)
            tx = re.search(r"number of transactions actually processed: (\d+)", out)
            if rc != 0 or not m:
                raise RuntimeError("pgbench (%s) failed\n%s" % (mode, mon.describe()))
            # CPU time of the server (postmaster and the backends it reaped)
            # and of pgbench, where the probes' cost lands. Traced, pgbench is
            # connleak's child: its time is connleak's children's time;
            # connleak's own (mostly its one-off start-up) is under footprint.
            server_cpu = bl.process_cpu_s(postmaster) - server_cpu0
            client_cpu = mon.children_cpu_s if mode == "traced" else mon.cpu_s
            r = {"tps": float(m.group(1)), "transactions": int(tx.group(1)) if tx else None,
                 "server_connections": server.count_authorized(app, since=mark),
                 "server_cpu_s": server_cpu, "client_cpu_s": client_cpu}
            if r["transactions"]:
                r["cpu_us_per_tx"] = 1e6 * (server_cpu + client_cpu) / r["transactions"]
            if mode == "traced":
                ctx.note_footprint("pgbench -C -S -c %d -T %d" % (clients, duration), mon)
                snap = read_json(json_path, torn_as_none=True) or {}
                procs = snap.get("processes", [])
                p = procs[0] if procs else {}
                r["connleak"] = {k: p.get(k) for k in ("acquired", "released", "released_untracked",
                                                        "leaked_at_exit", "dropped")}
                r["exact"] = (p.get("acquired") == r["server_connections"] and p.get("released") == p.get("acquired")
                              and p.get("leaked_at_exit") == 0 and p.get("dropped") == 0
                              and p.get("released_untracked") == 0)
            return r

        log("pgbench: warm-up")
        run("untraced", "warmup")
        results = []
        contaminated = []
        log("pgbench: %d interleaved pairs of %ds runs (-C -S -c %d -j %d)" % (pairs, duration, clients, threads))
        for i in range(pairs):
            foreign = ctx.check_foreign("pgbench pair %d" % i)
            order = ("untraced", "traced") if i % 2 == 0 else ("traced", "untraced")
            pair = {}
            for mode in order:
                pair[mode] = run(mode, "%s_%d" % (mode, i))
            foreign = ctx.check_foreign("pgbench pair %d" % i) or foreign
            contaminated.append(foreign)
            pair["ratio"] = pair["traced"]["tps"] / pair["untraced"]["tps"]
            if pair["traced"].get("cpu_us_per_tx") and pair["untraced"].get("cpu_us_per_tx"):
                pair["cpu_ratio"] = pair["untraced"]["cpu_us_per_tx"] / pair["traced"]["cpu_us_per_tx"]
            results.append(pair)
        clean = [i for i in range(pairs) if not contaminated[i]] or list(range(pairs))
        concurrent = pgbench_concurrent(ctx, server, duration)
        return {
            "concurrent": concurrent,
            "command": "pgbench " + " ".join(base[1:]) + "  (TCP 127.0.0.1, PostgreSQL 15, scale 1)",
            "pairs": results,
            "pairs_used": len(clean),
            "pairs_with_foreign_uprobes": sum(contaminated),
            "ratio": summary([results[i]["ratio"] for i in clean]),
            "tps_untraced": summary([results[i]["untraced"]["tps"] for i in clean]),
            "tps_traced": summary([results[i]["traced"]["tps"] for i in clean]),
            # CPU-bound equivalent: untraced/traced CPU per transaction, all
            # processes included; steadier than tps on a shared machine.
            "cpu_ratio": summary([results[i].get("cpu_ratio") for i in clean]),
            "cpu_us_per_tx_untraced": summary([results[i]["untraced"].get("cpu_us_per_tx") for i in clean]),
            "cpu_us_per_tx_traced": summary([results[i]["traced"].get("cpu_us_per_tx") for i in clean]),
            "connleak_counts_exact": all(p["traced"]["exact"] for p in results),
        }
    finally:
        server.stop()


def launched_child_running(connleak_pid, exe):
    """True once connleak's launched command runs exe (it runs only after
    connleak attached its probes)."""
    try:
        with open("/proc/%d/task/%d/children" % (connleak_pid, connleak_pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return False
    for k in kids:
        try:
            if os.path.realpath("/proc/%d/exe" % k) == os.path.realpath(exe):
                return True
        except OSError:
            pass
    return False


def pgbench_concurrent(ctx, server, duration):
    """Two pgbench -c 1 at the same time against the same server: one through
    the system libpq (traced by connleak, or not in control runs), one
    through a copy of libpq (LD_LIBRARY_PATH: a different file, which no
    probe reaches). Both see the same machine at the same moment, so the
    busy machine's drift cancels out of their tps ratio."""
    copy_dir = os.path.join(ctx.tmp, "libpq-copy")
    os.makedirs(copy_dir, exist_ok=True)
    copy = os.path.join(copy_dir, "libpq.so.5")
    if not os.path.exists(copy):
        shutil.copyfile(os.path.realpath(ctx.libpq), copy)
    base = [PGBENCH, "-n", "-C", "-S", "-T", str(duration), "-c", "1", "-j", "1"]
    plan = (["control", "traced", "traced"] * 2) if not ctx.quick else ["control", "traced"]
    runs = []
    log("pgbench: %d concurrent runs (probed libpq vs copy, %s)" % (len(plan), ", ".join(plan)))
    for i, mode in enumerate(plan):
        tag = "cc%d_%s" % (i, mode)
        json_path = os.path.join(ctx.tmp, "pgbench-%s.json" % tag)
        env_a = server.env("bench_%s_probed" % tag)
        env_b = server.env("bench_%s_copy" % tag)
        env_b["LD_LIBRARY_PATH"] = copy_dir
        foreign = ctx.check_foreign("pgbench concurrent %d" % i)
        if mode == "traced":
            a = bl.Monitored(bl.connleak_cmd(ctx.tools, json_path, interval=1) + ["--"] + base, ctx.tmp,
                             name="pgbench-" + tag + "-a", env=env_a)
            ctx.our_pids.add(a.pid)
            bl.wait_for(lambda: launched_child_running(a.pid, PGBENCH) or not a.alive(), 60, 0.005)
        else:
            a = bl.Monitored(base, ctx.tmp, name="pgbench-" + tag + "-a", env=env_a)
        b = bl.Monitored(base, ctx.tmp, name="pgbench-" + tag + "-b", env=env_b)
        ra, rb = a.wait(duration + 120), b.wait(duration + 120)
        foreign = ctx.check_foreign("pgbench concurrent %d" % i) or foreign
        ta = re.search(r"^tps = ([0-9.]+)", a.stdout(), re.M)
        tb = re.search(r"^tps = ([0-9.]+)", b.stdout(), re.M)
        if ra != 0 or rb != 0 or not ta or not tb:
            raise RuntimeError("concurrent pgbench failed\n%s\n%s" % (a.describe(), b.describe()))
        r = {"mode": mode, "tps_system_libpq": float(ta.group(1)), "tps_copy": float(tb.group(1)),
             "foreign_uprobes": foreign}
        r["ratio"] = r["tps_system_libpq"] / r["tps_copy"]
        if mode == "traced":
            ctx.note_footprint("pgbench -C -S -c 1 -T %d, beside an untraced one" % duration, a)
            snap = read_json(json_path, torn_as_none=True) or {}
            p = (snap.get("processes") or [{}])[0]
            n = server.count_authorized("bench_%s_probed" % tag)
            r["exact"] = (p.get("acquired") == n and p.get("released") == n and p.get("dropped") == 0)
        runs.append(r)
    clean = [r for r in runs if not r["foreign_uprobes"]] or runs
    return {
        "command": "pgbench " + " ".join(base[1:]) + " x2 at once (system libpq | copy)",
        "runs": runs,
        "ratio_traced": summary([r["ratio"] for r in clean if r["mode"] == "traced"]),
        "ratio_control": summary([r["ratio"] for r in clean if r["mode"] == "control"]),
        "connleak_counts_exact": all(r.get("exact", True) for r in runs),
    }


# ---------------------------------------------------------------- exactness

def section_python(ctx):
    """Python frames: what capturing them adds per acquisition (python_cost.py)."""
    from connleak_testkit.pgserver import PgServer
    import python_cost
    server = PgServer()
    server.start()
    try:
        dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % server.port
        return python_cost.measure(ctx.tools.connleak, dsn, n=500 if ctx.quick else 1000,
                                   rounds=2 if ctx.quick else 5)
    finally:
        server.stop()


def section_handles(ctx):
    """Connection state: what reading each live handle costs per interval (handle_state_cost.py)."""
    from connleak_testkit.pgserver import PgServer
    import handle_state_cost
    server = PgServer()
    server.start()
    try:
        dsn = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % server.port
        return handle_state_cost.measure(ctx.tools.connleak, dsn, n=100 if ctx.quick else 200,
                                         rounds=2 if ctx.quick else 3)
    finally:
        server.stop()


def section_http(ctx):
    """--http: /metrics on 1,000 processes x 10 sites; tracing cost while scraped (http_cost.py)."""
    import http_cost
    return http_cost.measure(ctx.tools, ctx.tmp, ctx.quick)


def section_server(ctx):
    """--server: the per-interval pg_stat_activity read with 1,000 connections (server_cost.py)."""
    import server_cost
    return server_cost.measure(ctx.tools.connleak, n=1000, rounds=2 if ctx.quick else 3,
                               seconds=6 if ctx.quick else 10, tmp=ctx.tmp)


def section_exactness(ctx):
    total = 40000 if ctx.quick else 200000
    log("exactness: %d lifecycles, 4 processes x 4 threads, 1 in 50 leaked, a ping every 100" % total)
    full = bl.run_exactness(ctx.tools, ctx.tmp, total=total, procs=4, threads=4, leak_every=50,
                            ping_every=100, api="mix", timeout=600)
    if full.get("footprint"):
        ctx.footprints.append(dict(full["footprint"], workload="exactness: %d lifecycles, 16 threads" % total))
    ctx.bpf_maps = full.get("bpf_maps")
    log("exactness: maps too small (--max-conns 64 --max-sites 2 --max-procs 3)")
    small = bl.run_exactness(ctx.tools, ctx.tmp, total=total // 10, procs=4, threads=4, leak_every=20,
                             ping_every=100, api="mix", max_conns=64, max_sites=2, max_procs=3, timeout=600)
    for r in (full, small):
        r.pop("client_workers", None)
        r["failed_checks"] = bl.failed_checks(r)
        r.pop("checks", None)
    return {"full": full, "small_maps": small}


# ---------------------------------------------------------------- exited

def section_exited(ctx):
    """Memory with many short-lived processes: connleak -i 0.2 launches
    forker (tests/forker), whose children each make one connection to a
    real server and exit. Exited processes beyond the latest 100 are folded
    per comm, so connleak's peak RSS must not grow with their number, and
    its counts must equal the server's log_connections count."""
    from connleak_testkit.pgserver import PgServer
    children = 2000 if ctx.quick else 10000
    forker = os.path.join(ctx.tools.build_dir, "tests", "forker")
    log("exited: %d short-lived processes, one connection each, connleak -i 0.2" % children)
    server = PgServer().start()
    try:
        app = "bench_exited"
        mark = server.log_mark()
        snap_path = os.path.join(ctx.tmp, "exited.json")
        mon = bl.Monitored([ctx.tools.connleak, "-i", "0.2", "--leak-after", "0", "--quiet", "--json", snap_path,
                            "--", forker, server.conninfo(app), children, 8], ctx.tmp, name="exited")
        ctx.our_pids.add(mon.pid)
        rc = mon.wait(1800)
        if rc is None:
            mon.kill()
            raise RuntimeError("connleak did not finish in 30 min")
        if rc != 0:
            raise RuntimeError("connleak failed: " + mon.describe())
        server_count = server.count_authorized(app, since=mark)
    finally:
        server.stop()
    with open(snap_path) as f:
        snap = json.load(f)
    st = snap["tracking_stats"]
    fp = mon.footprint()
    ctx.footprints.append(dict(fp, workload="exited: %d short-lived processes" % children))
    return {"children": children, "server_connections": server_count,
            "acquired": st["total_acquired"], "released": st["total_released"], "dropped": st["total_dropped"],
            "processes_listed": len(snap["processes"]), "exited_folded_processes": snap["exited_folded_processes"],
            "json_bytes": os.path.getsize(snap_path), "peak_rss_mb": round(fp["peak_rss_kb"] / 1024, 1),
            "cpu_s": fp["cpu_s"], "wall_s": fp["wall_s"],
            "connleak_counts_exact": st["total_acquired"] == st["total_released"] == server_count == children
            and st["total_dropped"] == 0}


# ---------------------------------------------------------------- bystander

def section_bystander(ctx):
    pairs = 3 if ctx.quick else 6
    iters = 1500 if ctx.quick else 4000
    n_libpq = 3000 if ctx.quick else 8000
    t = ctx.tools
    copy = os.path.join(ctx.tmp, "libpq-copy", "libpq.so.5")
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    if not os.path.exists(copy):
        shutil.copyfile(os.path.realpath(ctx.libpq), copy)
    idle = bl.Monitored([t.pqstress, "-n", 1, "-l", 1, "-W", "-T", 900], ctx.tmp, name="idle")
    try:
        if not bl.wait_for(lambda: '"role":"total"' in idle.stdout(), 60):
            raise RuntimeError("idle libpq process did not start\n" + idle.describe())
        results = []
        contaminated = []
        log("bystander: %d interleaved pairs (bystander -n %d; untraced libpq user -n %d)" % (pairs, iters, n_libpq))
        for i in range(pairs):
            foreign = ctx.check_foreign("bystander pair %d" % i)
            # connleak -p IDLE as by default (probes on libpq's file for every
            # process, to follow children) and with --no-follow (probes in
            # IDLE only).
            pair = {}
            for mode in rotate(("alone", "connleak", "no_follow"), i):
                cl = None
                if mode != "alone":
                    json_path = os.path.join(ctx.tmp, "bystander-%s-%d.json" % (mode, i))
                    extra = ["--no-follow"] if mode == "no_follow" else []
                    cl = bl.Monitored(bl.connleak_cmd(t, json_path, interval=1, extra=extra) + ["-p", idle.pid],
                                      ctx.tmp, name="bystander-%s-%d" % (mode, i))
                    ctx.our_pids.add(cl.pid)
                    if not bl.wait_for(lambda: os.path.exists(json_path) or not cl.alive(), 60) or not cl.alive():
                        raise RuntimeError("connleak -p did not attach\n" + cl.describe())
                by = subprocess.run([t.bystander, "-n", str(iters)], stdout=subprocess.PIPE, text=True, timeout=600)
                lp = subprocess.run([t.pqstress, "-n", str(n_libpq), "-B", copy, "-b", "50"],
                                    stdout=subprocess.PIPE, text=True, timeout=600)
                if cl is not None:
                    cl.send_signal(signal.SIGINT)
                    if cl.wait(60) != 0:
                        raise RuntimeError("connleak -p failed\n" + cl.describe())
                    if mode == "connleak":
                        ctx.note_footprint("bystander: attached to an idle libpq process", cl)
                b = bl.tagged_json(by.stdout, "bystander")[0]
                q = [x for x in bl.tagged_json(lp.stdout, "pqstress") if x["role"] == "ab"][0]
                pair[mode] = {"ns_per_iter": b["ns_per_iter"], "cpu_ns_per_iter": b["cpu_ns_per_iter"],
                              "libpq_cpu_ns_per_cycle": q["plain_cpu_ns_per_cycle"],
                              "libpq_added_cpu_ns": q["added_cpu_ns_per_cycle"]}
            foreign = ctx.check_foreign("bystander pair %d" % i) or foreign
            contaminated.append(foreign)
            a, c = pair["alone"], pair["connleak"]
            pair["slowdown_pct"] = 100.0 * (c["ns_per_iter"] / a["ns_per_iter"] - 1)
            pair["cpu_slowdown_pct"] = 100.0 * (c["cpu_ns_per_iter"] / a["cpu_ns_per_iter"] - 1)
            pair["libpq_added_cpu_ns"] = c["libpq_added_cpu_ns"]  # A/B in pqstress: system libpq vs copy
            pair["libpq_added_cpu_ns_no_follow"] = pair["no_follow"]["libpq_added_cpu_ns"]
            results.append(pair)
        clean = [i for i in range(pairs) if not contaminated[i]] or list(range(pairs))
        log("bystander: BPF time charged to it (bpf_stats_enabled, one extra run)")
        accounted = bystander_accounted(ctx, idle.pid, iters)
        return {
            "accounted": accounted,
            "workload": "bystander -n %d: per iteration a loopback TCP connect/accept/64 B each way/close, "
                        "8 Unix socketpair round trips, 8 getppid, a thread created+joined, and every 20th "
                        "iteration a fork+exit+wait" % iters,
            "pairs": results,
            "pairs_used": len(clean),
            "pairs_with_foreign_uprobes": sum(contaminated),
            "slowdown_pct": summary([results[i]["slowdown_pct"] for i in clean]),
            "cpu_slowdown_pct": summary([results[i]["cpu_slowdown_pct"] for i in clean]),
            "ns_per_iter_alone": summary([results[i]["alone"]["ns_per_iter"] for i in clean]),
            "untraced_libpq_user_added_cpu_ns": summary([results[i]["libpq_added_cpu_ns"] for i in clean]),
            "untraced_libpq_user_added_cpu_ns_no_follow": summary([results[i]["libpq_added_cpu_ns_no_follow"]
                                                                   for i in clean]),
            "untraced_libpq_user_cpu_ns_alone": summary([results[i]["alone"]["libpq_cpu_ns_per_cycle"]
                                                         for i in clean]),
        }
    finally:
        idle.send_signal(signal.SIGTERM)  # pqstress ends its hold
        if idle.wait(30) is None:
            idle.kill()


# ---------------------------------------------------------------- scale

def scale_line_values(text, key):
    # Per report: "connleak-scale: report_ms=.. report_cpu_ms=.. sockets_cpu_ms=.. handle_reads_cpu_ms=.."
    return [float(m) for m in re.findall(r"connleak-scale: (?=report_ms=)[^\n]*?\b%s=([0-9.]+)" % key, text)]


def section_scale(ctx):
    """connleak -- handle_holder PROCS HANDLES: PROCS forked children each
    hold HANDLES live PGconn (PQconnectStart to a refused port). Reports
    taken while all of them are live are timed (CONNLEAK_SCALE_STATS=1: one
    line per report); BPF map memory from fdinfo, RSS from /proc. Then every
    handle is finished: released must equal acquired exactly."""
    procs, handles = (200, 100) if ctx.quick else (1000, 100)
    total = procs * handles
    holder = os.path.join(ctx.tools.build_dir, "bench", "handle_holder")
    snap_path = os.path.join(ctx.tmp, "scale.json")
    env = dict(os.environ, CONNLEAK_SCALE_STATS="1")
    log("scale: %d processes x %d live handles (refused port), connleak -i 2" % (procs, handles))
    r, w = os.pipe()
    mon = bl.Monitored([ctx.tools.connleak, "-i", "2", "--leak-after", "0", "-q", "-j", snap_path, "--",
                        holder, procs, handles, "host=127.0.0.1 port=1 connect_timeout=1"],
                       ctx.tmp, name="scale", env=env, stdin=r)
    os.close(r)
    ctx.our_pids.add(mon.pid)
    out = {"processes": procs, "handles_per_process": handles}
    try:
        if not bl.wait_for(lambda: "ready" in mon.stdout() or not mon.alive(), 900) or not mon.alive():
            raise RuntimeError("handle_holder did not get ready\n" + mon.describe())

        def all_live():
            s = read_json(snap_path, torn_as_none=True)
            return s if s and s["tracking_stats"]["total_active"] == total else None
        snap = bl.wait_for(all_live, 300, interval=0.2)
        if snap is None:
            raise RuntimeError("never saw %d live handles\n%s" % (total, mon.describe()))
        before = len(scale_line_values(mon.stderr(), "report_ms"))
        time.sleep(10)  # five reports of the full state
        snap = read_json(snap_path)
        ms = scale_line_values(mon.stderr(), "report_ms")[before + 1:]  # the first may predate the state
        cpu_ms = scale_line_values(mon.stderr(), "report_cpu_ms")[before + 1:]
        sockets_ms = scale_line_values(mon.stderr(), "sockets_cpu_ms")[before + 1:]
        handle_reads_ms = scale_line_values(mon.stderr(), "handle_reads_cpu_ms")[before + 1:]
        # The report's steps (CPU): maps read and annotated, model, notices, sink and JSON file;
        # and how many fd tables the socket scan listed again.
        steps = {k: scale_line_values(mon.stderr(), k)[before + 1:]
                 for k in ("collect_cpu_ms", "model_cpu_ms", "notices_cpu_ms", "output_cpu_ms", "fd_tables_read")}
        maps = bl.bpf_maps_of(mon.pid)
        with open("/proc/%d/status" % mon.pid) as f:
            status = dict(line.split(":", 1) for line in f)
        st = snap["tracking_stats"]
        out.update({
            "report_ms": summary(ms), "report_cpu_ms": summary(cpu_ms), "reports_timed": len(ms),
            "sockets_cpu_ms": summary(sockets_ms), "handle_reads_cpu_ms": summary(handle_reads_ms),
            "steps": {k: summary(v) for k, v in steps.items() if v},
            "bpf_map_bytes": sum(m.get("memlock", 0) for m in maps),
            "bpf_maps": [{k: m.get(k) for k in ("name", "max_entries", "memlock")} for m in maps],
            "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
            "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024, 1),
            "json_bytes": os.path.getsize(snap_path),
            "total_active": st["total_active"], "total_acquired": st["total_acquired"],
            "dropped": st["total_dropped"],
            "processes_with_handles": sum(1 for p in snap["processes"] if p["active"] == handles),
            "connections_listed_max": max(len(p["connections"]) for p in snap["processes"]),
            "connections_total_sum": sum(p.get("connections_total", 0) for p in snap["processes"]),
        })
        os.write(w, b"\n")  # every child finishes its handles and exits
        if mon.wait(900) is None:
            raise RuntimeError("connleak did not end with the command\n" + mon.describe())
        final = read_json(snap_path)["tracking_stats"]
        out.update({"final_acquired": final["total_acquired"], "final_released": final["total_released"],
                    "final_dropped": final["total_dropped"], "exit_status": mon.returncode})
    finally:
        os.close(w)
        if mon.alive():
            mon.kill()
    ctx.footprints.append(dict(mon.footprint(), workload="scale: %d processes, %d live handles" % (procs, total)))
    out["counts_exact"] = (out["total_active"] == out["total_acquired"] == total and out["dropped"] == 0
                           and out["processes_with_handles"] == procs
                           and out["connections_total_sum"] == total
                           and out["final_acquired"] == out["final_released"] == total
                           and out["final_dropped"] == 0)
    out["all"] = scale_all(ctx)
    return out


def scale_all(ctx):
    """connleak --all on this host: what its once-a-second scan of every
    process's maps costs (connleak's own figures), and the bystander's
    runtime alone vs under connleak --all, interleaved pairs."""
    pairs = 2 if ctx.quick else 3
    iters = 1500 if ctx.quick else 4000
    t = ctx.tools
    results = []
    scans = []
    for i in range(pairs):
        pair = {}
        for mode in rotate(("alone", "all"), i):
            cl = None
            if mode == "all":
                json_path = os.path.join(ctx.tmp, "scale-all-%d.json" % i)
                cl = bl.Monitored([t.connleak, "--all", "-q", "-i", "1", "-j", json_path], ctx.tmp,
                                  name="scale-all-%d" % i, env=dict(os.environ, CONNLEAK_SCALE_STATS="1"))
                ctx.our_pids.add(cl.pid)
                if not bl.wait_for(lambda: os.path.exists(json_path) or not cl.alive(), 120) or not cl.alive():
                    raise RuntimeError("connleak --all did not start\n" + cl.describe())
            by = subprocess.run([t.bystander, "-n", str(iters)], stdout=subprocess.PIPE, text=True, timeout=600)
            if cl is not None:
                cl.send_signal(signal.SIGINT)
                if cl.wait(60) != 0:
                    raise RuntimeError("connleak --all failed\n" + cl.describe())
                m = re.search(r"host_scans=(\d+) host_scan_ms_avg=([0-9.]+) host_scan_ms_max=([0-9.]+) "
                              r"maps_read=(\d+) full_scans=(\d+) full_scan_ms_avg=([0-9.]+) attach_ms=([0-9.]+)",
                              cl.stderr())
                if m:
                    scans.append({"scans": int(m.group(1)), "ms_avg": float(m.group(2)),
                                  "ms_max": float(m.group(3)), "maps_read": int(m.group(4)),
                                  "full_scans": int(m.group(5)), "full_ms_avg": float(m.group(6)),
                                  "attach_ms": float(m.group(7)), "cpu_percent": cl.footprint()["cpu_percent"],
                                  "processes_on_host": len(os.listdir("/proc"))})
            b = bl.tagged_json(by.stdout, "bystander")[0]
            pair[mode] = {"ns_per_iter": b["ns_per_iter"], "cpu_ns_per_iter": b["cpu_ns_per_iter"]}
        pair["slowdown_pct"] = 100.0 * (pair["all"]["ns_per_iter"] / pair["alone"]["ns_per_iter"] - 1)
        pair["cpu_slowdown_pct"] = 100.0 * (pair["all"]["cpu_ns_per_iter"] / pair["alone"]["cpu_ns_per_iter"] - 1)
        results.append(pair)
    return {"pairs": results, "scans": scans,
            "slowdown_pct": summary([p["slowdown_pct"] for p in results]),
            "cpu_slowdown_pct": summary([p["cpu_slowdown_pct"] for p in results]),
            "scan_ms_avg": summary([s["ms_avg"] for s in scans]),
            "full_scan_ms_avg": summary([s["full_ms_avg"] for s in scans if s["full_scans"]]),
            "processes_per_scan": summary([s["maps_read"] / s["scans"] for s in scans if s["scans"]]),
            "connleak_cpu_percent": summary([s["cpu_percent"] for s in scans if s["cpu_percent"] is not None])}


# ---------------------------------------------------------------- machine

def machine():
    def first(path, prefix):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(prefix):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None

    def version(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    mem = first("/proc/meminfo", "MemTotal")
    return {
        "kernel": platform.release(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "cpus": os.cpu_count(),
        "memory": mem,
        "hypervisor": "yes" if "hypervisor" in (first("/proc/cpuinfo", "flags") or "") else "no",
        "clocksource": version(["cat", "/sys/devices/system/clocksource/clocksource0/current_clocksource"]),
        "os": version(["sh", "-c", ". /etc/os-release; echo \"$PRETTY_NAME\""]),
        "libbpf": version(["sh", "-c", "dpkg-query -W -f='${Version}' libbpf1"]),
        "libpq": version(["sh", "-c", "dpkg-query -W -f='${Version}' libpq5"]),
        "postgresql": version(["/usr/lib/postgresql/15/bin/postgres", "--version"]),
    }


# ---------------------------------------------------------------- report

def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def goals_of(res):
    goals = []
    pg = res.get("pgbench")
    if pg:
        v = pg["ratio"]["median"]
        goals.append({"goal": "pgbench -C throughput traced/untraced", "target": ">= %.2f" % GOALS["pgbench_ratio"],
                      "value": round(v, 4), "met": v >= GOALS["pgbench_ratio"]})
    c = res.get("cost")
    if c:
        v = c["ratio_vs_cycle_floor"]
        g = {"goal": "added cost per PQconnectStart+PQfinish / bare probe floor of the same hits",
             "target": "<= %.1f" % GOALS["cost_vs_floor"], "value": round(v, 3), "met": v <= GOALS["cost_vs_floor"]}
        if not c.get("clean", True):  # another tracer shared the traps: not measurable
            g["value"], g["met"] = "not measured (foreign probes on libpq in every round)", False
        goals.append(g)
    b = res.get("bystander")
    if b:
        # The kernel's accounting of connleak's programs in the bystander's
        # runs: A/B wall clock on a shared VM is noise of +-10 % or more.
        a = b.get("accounted")
        v = a["overhead_pct"] if a else b["slowdown_pct"]["median"]
        goals.append({"goal": "bystander slowdown (BPF time charged to it)" if a else
                      "bystander slowdown (wall clock)", "target": "<= %.1f %%" % GOALS["bystander_slowdown_pct"],
                      "value": round(v, 2), "met": v <= GOALS["bystander_slowdown_pct"]})
    x = res.get("exited")
    if x:
        goals.append({"goal": "connleak peak RSS after %d short-lived processes" % x["children"],
                      "target": "<= %.0f MB" % GOALS["peak_rss_mb"], "value": x["peak_rss_mb"],
                      "met": x["peak_rss_mb"] <= GOALS["peak_rss_mb"]})
        goals.append({"goal": "exact counts with %d short-lived processes" % x["children"], "target": "exact",
                      "value": "exact" if x["connleak_counts_exact"] else "MISMATCH",
                      "met": x["connleak_counts_exact"]})
    e = res.get("exactness")
    if e or (pg and "connleak_counts_exact" in pg) or c:
        ok = True
        if e:
            ok = ok and e["full"]["ok"] and e["small_maps"]["ok"]
        if pg:
            ok = ok and pg["connleak_counts_exact"] and pg.get("concurrent", {}).get("connleak_counts_exact", True)
        if c:
            ok = ok and c["connleak_counts_exact"]
        goals.append({"goal": "exact counts (every run checked)", "target": "exact", "value": "exact" if ok else "MISMATCH",
                      "met": ok})
    fp = res.get("footprint")
    if fp and fp.get("peak_rss_mb") is not None:
        v = fp["peak_rss_mb"]
        goals.append({"goal": "connleak peak RSS", "target": "<= %.0f MB" % GOALS["peak_rss_mb"], "value": round(v, 1),
                      "met": v <= GOALS["peak_rss_mb"]})
    return goals


def table_rows(res):
    """(figure, how, result) rows."""
    rows = []
    pg = res.get("pgbench")
    if pg:
        r = pg["ratio"]
        rows.append(("pgbench -C -S tps, traced/untraced",
                     "%d interleaved A/B pairs, %s" % (len(pg["pairs"]), pg["command"]),
                     "min %.3f / median %.3f / max %.3f" % (r["min"], r["median"], r["max"])))
        rows.append(("pgbench tps untraced | traced (median)", "same runs",
                     "%.1f | %.1f" % (pg["tps_untraced"]["median"], pg["tps_traced"]["median"])))
        r = pg["cpu_ratio"]
        if r["n"]:
            rows.append(("pgbench CPU per transaction, untraced/traced",
                         "(server + pgbench CPU time) / transactions, same pairs",
                         "min %.3f / median %.3f / max %.3f (%.0f vs %.0f us)" % (
                             r["min"], r["median"], r["max"], pg["cpu_us_per_tx_untraced"]["median"],
                             pg["cpu_us_per_tx_traced"]["median"])))
        cc = pg.get("concurrent")
        if cc and cc["ratio_traced"]["n"]:
            r, k = cc["ratio_traced"], cc["ratio_control"]
            rows.append(("pgbench -C -S tps, traced/untraced, run at once",
                         "%d runs: -c 1 on the system libpq (traced) beside -c 1 on a libpq copy"
                         % r["n"], "min %.3f / median %.3f / max %.3f" % (r["min"], r["median"], r["max"])))
            if k["n"]:
                rows.append(("  same, neither traced (control: the method's bias)", "%d runs" % k["n"],
                             "min %.3f / median %.3f / max %.3f" % (k["min"], k["median"], k["max"])))
        rows.append(("pgbench: connleak acquired == server's connections", "server log (log_connections)",
                     "yes" if pg["connleak_counts_exact"] else "NO"))
    c = res.get("cost")
    if c:
        co = c["conditions"]
        rows.append(("PQconnectStart+PQfinish, untraced", "CPU time per cycle, median of %d rounds"
                     % c["rounds_used"], "%.1f us" % (co["untraced"]["plain_cpu_ns"]["median"] / 1000)))
        a = co["connleak"]["added_cpu_ns"]
        rows.append(("  added by connleak", "A/B: probed libpq - unprobed copy, same process, %d cycles/run"
                     % c["cycles_per_run"],
                     "%.1f us (min %.1f, max %.1f)" % (a["median"] / 1000, a["min"] / 1000, a["max"] / 1000)))
        a = co["untraced"]["added_cpu_ns"]
        rows.append(("  added with no tracer (noise, foreign probes)", "same A/B, nothing attached",
                     "%.1f us (min %.1f, max %.1f)" % (a["median"] / 1000, a["min"] / 1000, a["max"] / 1000)))
        st = [x for x in c.get("connleak_stacks") or [] if x]
        if st:
            rows.append(("  its acquisitions' stacks: unwound / truncated / events dropped",
                         "per run, %d probed cycles each" % (c["cycles_per_run"] // 2),
                         ", ".join("%s/%s/%s" % (x["stacks_unwound"], x["stacks_truncated"], x["dropped_stacks"])
                                   for x in st)))
        a = co["connleak_no_stacks"]["added_cpu_ns"]
        rows.append(("  added by connleak --stack-size 0", "same A/B (counts only: no stack copy, no events)",
                     "%.1f us (min %.1f, max %.1f)" % (a["median"] / 1000, a["min"] / 1000, a["max"] / 1000)))
        a = co["floor_points"]["added_cpu_ns"]
        rows.append(("  added by no-op programs on connleak's probe points", "uprobe_floor attach (its %d points), same A/B"
                     % len(connleak_points(c.get("pqfinish_probe_offset"))), "%.1f us" % (a["median"] / 1000)))
        a = co["floor_handles"]["added_cpu_ns"]
        rows.append(("  added by no-op programs on PQconnectStart entry+return, PQfinish entry",
                     "uprobe_floor attach PQconnectStart:ret %s" % finish_point(c.get("pqfinish_probe_offset")),
                     "%.1f us" % (a["median"] / 1000)))
        fl = c["floor"]
        rows.append(("bare uprobe, no-op fn (push %rbp)", "uprobe_floor self: A/B vs unprobed twin, CPU time", "%.2f us" % (fl["uprobe_push_ns"]["median"] / 1000)))
        rows.append(("bare uprobe+uretprobe, no-op fn (push %rbp)", "uprobe_floor self, CPU time",
                     "%.2f us" % (fl["uprobe_uretprobe_push_ns"]["median"] / 1000)))
        rows.append(("bare uprobe, no-op fn (test %rdi: single-stepped)", "uprobe_floor self, CPU time",
                     "%.2f us" % (fl["uprobe_test_ns"]["median"] / 1000)))
        rows.append(("cycle floor = uprobe+uretprobe(push) + uprobe(%s)" % fl.get("cycle_floor_finish_probe", "test"),
                     "sum per round", "%.2f us" % (fl["cycle_floor_ns"]["median"] / 1000)))
        rows.append(("connleak added / cycle floor", "goal <= 1.2", "%.2f" % c["ratio_vs_cycle_floor"]))
        if "ratio_no_stacks_vs_cycle_floor" in c:
            rows.append(("connleak --stack-size 0 added / cycle floor", "the same, without stack capture",
                         "%.2f" % c["ratio_no_stacks_vs_cycle_floor"]))
        if "ratio_per_round_handles_floor_vs_cycle_floor" in c:
            h = c["ratio_per_round_handles_floor_vs_cycle_floor"]
            rows.append(("no-op programs on PQconnectStart entry+return, PQfinish entry / cycle floor",
                         "per round, median (min-max): the goal leaves 1.2 minus this for all of connleak's work",
                         "%.2f (%.2f-%.2f)" % (h["median"], h["min"], h["max"])))
        rows.append(("connleak added / no-op programs at the same points", "program work on top of the traps",
                     "%.2f" % c["ratio_vs_points_floor"]))
        if "ratio_per_round_no_stacks_vs_cycle_floor" in c:
            r, q = c["ratio_per_round_vs_cycle_floor"], c["ratio_per_round_vs_points_floor"]
            rows.append(("  the same two ratios, per round", "median (min-max) of per-round ratios",
                         "%.2f (%.2f-%.2f) | %.2f (%.2f-%.2f)" % (r["median"], r["min"], r["max"], q["median"],
                                                                   q["min"], q["max"])))
        rows.append(("connleak added / one uprobe+uretprobe", "literal reading (a cycle has 3 hits or more)",
                     "%.2f" % c["ratio_vs_one_uprobe_uretprobe"]))
        ps = c.get("bpf_prog_ns_per_run") or {}
        if ps:
            rows.append(("connleak BPF program time per hit", "kernel.bpf_stats_enabled run",
                         ", ".join("%s %.0f ns" % (k, v["ns_per_run"]) for k, v in sorted(ps.items()))))
            rows.append(("connleak BPF program runs skipped (recursion_misses)", "same run",
                         "%d" % sum(v.get("recursion_misses") or 0 for v in ps.values())))
    e = res.get("exactness")
    if e:
        f = e["full"]
        cl = f.get("client", {})
        st = f.get("live_snapshot_stats") or {}
        rows.append(("exactness: %d lifecycles, %d procs x %d threads" % (f["total"], f["procs"], f["threads"]),
                     "client acquired/finished/held vs connleak acquired/released/active",
                     "%s/%s/%s vs %s/%s/%s, dropped %s: %s" % (
                         cl.get("acquired"), cl.get("finished"), cl.get("held"), st.get("total_acquired"),
                         st.get("total_released"), st.get("total_active"), st.get("total_dropped"),
                         "EXACT" if f["ok"] else "MISMATCH")))
        s = e["small_maps"]
        rows.append(("maps too small (--max-conns 64 --max-sites 2 --max-procs 3)", "%d lifecycles" % s["total"],
                     "dropped %s, exit %s: %s" % ((s.get("connleak_final") or {}).get("total_dropped"),
                                                  s.get("connleak_rc"), "OK" if s["ok"] else "FAILED")))
    b = res.get("bystander")
    if b:
        s = b["slowdown_pct"]
        rows.append(("bystander slowdown, wall", "%d interleaved pairs" % len(b["pairs"]),
                     "median %.2f %% (min %.2f, max %.2f)" % (s["median"], s["min"], s["max"])))
        s = b["cpu_slowdown_pct"]
        rows.append(("bystander slowdown, CPU time", "same runs",
                     "median %.2f %% (min %.2f, max %.2f)" % (s["median"], s["min"], s["max"])))
        a = b.get("accounted")
        if a:
            rows.append(("bystander slowdown, BPF time charged to it", "all connleak programs' run time during "
                         "its run (bpf_stats) / its CPU time",
                         "%.2f %% (%.0f ns of %.0f us per iteration: %s)" % (
                             a["overhead_pct"], a["bpf_ns_per_iter"], a["cpu_ns_per_iter"] / 1000,
                             ", ".join("%s %.1fx%.0f ns" % (k, v["runs_per_iter"], v["ns_per_run"])
                                       for k, v in sorted(a["programs"].items())))))
        s = b["untraced_libpq_user_added_cpu_ns"]
        rows.append(("untraced libpq user (not the target): added per cycle", "same pairs, pqstress -B (A/B)",
                     "%.1f us of %.1f us" % (s["median"] / 1000, b["untraced_libpq_user_cpu_ns_alone"]["median"] / 1000)))
        s = b.get("untraced_libpq_user_added_cpu_ns_no_follow")
        if s:
            rows.append(("  the same, connleak -p --no-follow", "probes in the target only (same pairs)",
                         "%.1f us (min %.1f, max %.1f)" % (s["median"] / 1000, s["min"] / 1000, s["max"] / 1000)))
    h = res.get("handles")
    if h:
        rows.append(("connection state: read per live handle", "connleak's thread CPU per read (median of runs)",
                     "%.2f us (wall %.2f us); %d handles: %.2f ms per interval" %
                     (h["cpu_us_per_handle_read_median"], h["us_per_handle_read_median"], h["handles"],
                      h["ms_per_interval_median"])))
    sv = res.get("server")
    if sv:
        how = "%d connections made before the attach (half TCP, half Unix), -i %g, %d runs" % (
            sv["connections"], sv["interval_s"], sv["rounds"])
        rows.append(("--server: the pg_stat_activity query, round trip", how,
                     "median %.2f ms (min %.2f, max %.2f), %.0f rows" % (
                         sv["query_ms"]["median"], sv["query_ms"]["min"], sv["query_ms"]["max"],
                         sv["rows_per_read"]["median"])))
        rows.append(("--server: backends' fd tables (Unix clients)", "same runs, per read",
                     "median %.2f ms" % sv["backend_scan_ms"]["median"]))
        rows.append(("--server: the traced process's sockets (both ends)", "same runs, per round, worker thread",
                     "median %.2f ms" % sv["held_scan_ms"]["median"]))
        rows.append(("--server: worker thread CPU per read", "same runs",
                     "median %.2f ms" % sv["worker_cpu_ms_per_read"]["median"]))
        rows.append(("--server: tracing thread per interval (takes the reads)", "same runs",
                     "median %.2f ms" % sv["annotate_ms"]["median"]))
        rows.append(("--server: connleak CPU added per interval", "with - without --server, alternating runs",
                     "median %.2f ms (min %.2f, max %.2f)" % (
                         sv["added_cpu_ms_per_interval"]["median"], sv["added_cpu_ms_per_interval"]["min"],
                         sv["added_cpu_ms_per_interval"]["max"])))
        rows.append(("--server: connections joined", "pre-attach, backend PID and state", "%d of %d (%s)" % (
            sv["joined"], sv["connections"], "exact" if sv["joined_exact"] else "NOT EXACT")))
    fp = res.get("footprint")
    if fp and fp.get("peak_rss_mb") is not None:
        rows.append(("connleak peak RSS", "VmHWM, all traced runs", "%.1f MB" % fp["peak_rss_mb"]))
        for w in fp["by_workload"]:
            rows.append(("connleak CPU: " + w["workload"], "utime+stime / wall",
                         "%.2f s of %.1f s (%.1f %%), peak RSS %.1f MB" % (w["cpu_s"], w["wall_s"], w["cpu_percent"],
                                                                          w["peak_rss_kb"] / 1024)))
        if fp.get("bpf_map_bytes"):
            rows.append(("BPF map memory (default sizes)", "memlock of connleak's maps",
                         "%.1f MiB: %s" % (fp["bpf_map_bytes"] / 2**20,
                                           ", ".join("%s %.2f" % (m["name"] or m["map_id"], m["memlock"] / 2**20)
                                                     for m in fp["bpf_maps"]))))
    return rows


def print_table(res, out=sys.stdout):
    rows = table_rows(res)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print("", file=out)
    print("%-*s  %-*s  %s" % (w0, "figure", w1, "how", "result"), file=out)
    print("-" * (w0 + w1 + 40), file=out)
    for r in rows:
        print("%-*s  %-*s  %s" % (w0, r[0], w1, r[1], r[2]), file=out)
    print("", file=out)
    for g in res.get("goals", []):
        print("goal %-4s %s: %s (target %s)" % ("MET" if g["met"] else "MISS", g["goal"], g["value"], g["target"]),
              file=out)
    if res.get("warnings"):
        print("", file=out)
        for w in res["warnings"]:
            print("warning: " + w, file=out)


def markdown(res):
    lines = ["| figure | how | result |", "| --- | --- | --- |"]
    for r in table_rows(res):
        lines.append("| %s | %s | %s |" % tuple(x.replace("|", "\\|") for x in r))
    lines.append("")
    lines.append("| goal | target | measured | met |")
    lines.append("| --- | --- | --- | --- |")
    for g in res.get("goals", []):
        lines.append("| %s | %s | %s | %s |" % (g["goal"], g["target"], g["value"], "yes" if g["met"] else "**no**"))
    return "\n".join(lines)


def footprint_of(ctx):
    by = {}
    for fp in ctx.footprints:
        w = by.setdefault(fp["workload"], {"workload": fp["workload"], "runs": 0, "cpu_s": 0.0, "wall_s": 0.0,
                                           "peak_rss_kb": 0})
        w["runs"] += 1
        w["cpu_s"] += fp["cpu_s"] or 0
        w["wall_s"] += fp["wall_s"] or 0
        w["peak_rss_kb"] = max(w["peak_rss_kb"], fp["peak_rss_kb"])
    for w in by.values():
        w["cpu_percent"] = 100.0 * w["cpu_s"] / w["wall_s"] if w["wall_s"] else 0
    peak = max((fp["peak_rss_kb"] for fp in ctx.footprints), default=None)
    maps = ctx.bpf_maps or []
    return {"peak_rss_mb": peak / 1024 if peak else None, "by_workload": list(by.values()),
            "bpf_maps": maps, "bpf_map_bytes": sum(m.get("memlock", 0) for m in maps)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build directory (default: build)")
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test, not figures to publish)")
    ap.add_argument("--pgbench-seconds", type=int, default=0, metavar="S",
                    help="length of each pgbench run (default 6): longer runs resolve smaller effects")
    ap.add_argument("--pgbench-pairs", type=int, default=0, metavar="N",
                    help="interleaved traced/untraced pgbench pairs (default 5)")
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated: " + ",".join(SECTIONS))
    ap.add_argument("--out", default=os.path.join(HERE, "results.json"), help="results file (default bench/results.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs of every run)")
    ap.add_argument("--markdown", nargs="?", const=os.path.join(HERE, "results.json"), metavar="RESULTS",
                    help="print RESULTS (a results.json) as Markdown tables and exit")
    args = ap.parse_args()
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    if os.geteuid() != 0:
        log("needs root (BPF, and PostgreSQL is run as user postgres)")
        return 1
    sections = [s for s in args.only.split(",") if s]
    for s in sections:
        if s not in SECTIONS:
            log("unknown section %r" % s)
            return 2
    ctx = Ctx(args)
    missing = ctx.tools.missing()
    if missing:
        log("not built: %s (build with add_subdirectory(bench) in the top CMakeLists.txt)" % ", ".join(missing))
        return 1
    if not ctx.libpq:
        log("libpq.so.5 not found")
        return 1
    res = {"version": 1, "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "quick": ctx.quick, "machine": machine(), "loadavg_start": loadavg(), "libpq": ctx.libpq,
           "warnings": [], "bpf_stats_enabled_at_start": read_sysctl("/proc/sys/kernel/bpf_stats_enabled")}
    t0 = time.monotonic()
    funcs = {"cost": section_cost, "pgbench": section_pgbench, "exactness": section_exactness,
             "bystander": section_bystander, "exited": section_exited, "python": section_python,
             "handles": section_handles,
             "http": section_http,
             "server": section_server,

             "scale": section_scale}
    failed = False
    for s in SECTIONS:
        if s not in sections:
            continue
        log("== %s" % s)
        t1 = time.monotonic()
        try:
            res[s] = funcs[s](ctx)
        except Exception as e:  # report the others
            failed = True
            res.setdefault("errors", {})[s] = str(e)
            log("%s failed: %s" % (s, e))
        log("%s took %.0f s" % (s, time.monotonic() - t1))
    res["footprint"] = footprint_of(ctx)
    res["loadavg_end"] = loadavg()
    res["duration_s"] = round(time.monotonic() - t0, 1)
    res["foreign_libpq_uprobes"] = ctx.foreign
    if max(res["loadavg_start"][0], res["loadavg_end"][0]) > 1.5:
        res["warnings"].append("the machine was busy (load average %s at start, %s at end): wall-clock figures "
                               "(pgbench, bystander) are noisy; CPU-time figures less so"
                               % (res["loadavg_start"], res["loadavg_end"]))
    if res["bpf_stats_enabled_at_start"] == "1":
        res["warnings"].append("kernel.bpf_stats_enabled was already 1 (someone else's choice): every BPF "
                               "program ran with its statistics on, a few tens of ns more per run")
    if ctx.foreign:
        res["warnings"].append("other processes had uprobes on libpq during %d checks (another connleak?): "
                               "those rounds were left out where clean rounds remained" % len(ctx.foreign))
    res["goals"] = goals_of(res)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
        f.write("\n")
    print_table(res)
    print("results: %s (%.0f s)" % (args.out, res["duration_s"]))
    if args.keep:
        print("logs: %s" % ctx.tmp)
    else:
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    exact = all(g["met"] for g in res["goals"] if g["goal"].startswith("exact"))
    return 1 if failed or not exact else 0


if __name__ == "__main__":
    sys.exit(main())
