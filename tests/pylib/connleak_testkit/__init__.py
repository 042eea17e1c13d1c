"""connleak's Python test kit, shared by tests/integration, tests/sanitize
and bench/ (one sys.path entry: tests/pylib).

    paths      where connleak, pqclient and the build are (CONNLEAK, ...)
    pgserver   a throwaway PostgreSQL 15 (also a script: starts one by hand)
    tracer     connleak run to the end or in the background; ConnleakTestCase
    clients    pqclient: summaries, interactive mode
    snapshot   the JSON snapshot: reading it, processes, sites, counters
    stacks     stackclient and parsing of symbolized frames
    procs      other processes through /proc (uprobe breakpoints in place)
    benchlib   pqstress runs, footprint sampling, the exactness check
    watchdog   a hung test prints where it stood (CONNLEAK_TEST_WATCHDOG)
"""

from . import watchdog as _watchdog

_watchdog.arm_from_env()
