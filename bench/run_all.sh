#!/bin/sh
# connleak's benchmarks (make bench): bench/run_all.sh BUILD_DIR [bench.py options]
#   e.g. bench/run_all.sh build --quick     a smoke run, figures not to publish
#        bench/run_all.sh build --only cost one section
# Prints a table and writes bench/results.json; see BENCHMARKS.md.
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
[ $# -gt 0 ] && shift
exec /usr/bin/python3 "$here/bench.py" --build "$build" "$@"
