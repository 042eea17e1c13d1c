"""connleak's JSON snapshots (DESIGN.md's keys): reading them, finding a
process or a site in them, and the counters as dicts to compare in one go.
Pure: no process is run here."""

import json

PROCESS_KEYS = ("pid", "comm", "exited", "acquired", "released", "released_untracked", "released_inherited", "active",
                "leaks", "leaked_at_exit", "pings", "resets", "dropped", "top_connection_users",
                "connections")
SITE_KEYS = ("site", "acquired", "released", "active", "leaks", "leaked_at_exit", "avg_ms", "max_ms")
CONN_KEYS = ("conn", "tid", "site", "age_ms", "leak", "idle_ms", "last_used_site", "last_used_frames")
STATS_KEYS = ("total_acquired", "total_released", "total_active", "total_leaks", "leak_ratio",
              "total_leaked_at_exit", "total_dropped")


def read_json(path, torn_as_none=False):
    """The snapshot in path, or None if there is none (yet). A torn file
    raises ValueError (the tests assert there is none), or with
    torn_as_none gives None (the bench polls until it reads a whole one)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        if torn_as_none:
            return None
        raise


def find_process(snapshot, pid):
    for p in (snapshot or {}).get("processes", []):
        if p.get("pid") == pid:
            return p
    return None


def connections_of(snapshot, pid):
    """The live handles a snapshot lists for PID ([] if none or no process)."""
    p = find_process(snapshot or {}, pid)
    return p["connections"] if p else []


def sites(proc):
    """{site string: entry} of one process; duplicate site strings are an error."""
    out = {}
    for s in proc.get("top_connection_users", []):
        if s["site"] in out:
            raise AssertionError("site %r listed twice in %s" % (s["site"], proc))
        out[s["site"]] = s
    return out


def conn_value(s):
    """A connection address as printed (\"0x55...\" or a number) -> int."""
    return s if isinstance(s, int) else int(str(s), 16)


def dump(obj):
    return json.dumps(obj, indent=1, sort_keys=True)


def json_lines(text):
    """The JSON snapshots among lines of text (JSON Lines mixed with other output)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def proc_counts(proc):
    """The counters of a process entry, for one-shot dict comparison."""
    return {k: proc[k] for k in ("exited", "acquired", "released", "released_untracked", "active", "leaks",
                                 "leaked_at_exit", "pings", "resets", "dropped")}


def stacks_told(proc):
    """Whether every acquisition of a process entry has its stack told
    (unwound, truncated or dropped). A copied stack reaches userspace just
    after its count: a snapshot in between counts it on its caller's row."""
    # >=: dropped_stacks also counts dropped release and last-use events.
    return proc["stacks_unwound"] + proc["stacks_truncated"] + proc["dropped_stacks"] >= proc["acquired"]


def counts(exited, **kw):
    """A full proc_counts() dict: the given counters, every other one 0."""
    d = {"exited": exited, "acquired": 0, "released": 0, "released_untracked": 0, "active": 0, "leaks": 0,
         "leaked_at_exit": 0, "pings": 0, "resets": 0, "dropped": 0}
    for k, v in kw.items():
        if k not in d:
            raise KeyError(k)
        d[k] = v
    return d


def site_counts(site):
    return {k: site[k] for k in ("acquired", "released", "active", "leaks", "leaked_at_exit")}
