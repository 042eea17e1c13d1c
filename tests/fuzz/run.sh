#!/usr/bin/env bash
# Runs every libFuzzer target of BUILD_DIR for SECONDS each, from the
# committed corpus (tests/fuzz/corpus/NAME, read only) plus what earlier
# runs found (BUILD_DIR/fuzz-corpus/NAME). Fails at the first crash, leak,
# sanitizer report or broken invariant, naming the input that caused it.
#   tests/fuzz/run.sh BUILD_DIR SECONDS [NAME...]
set -euo pipefail
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(proc_maps proc_net unix_diag elf_symbols safe_text)

for t in "${targets[@]}"; do
    work="$build/fuzz-corpus/$t"
    crashes="$build/fuzz-crashes"
    mkdir -p "$work" "$crashes"
    echo "== fuzz_$t: ${seconds}s"
    log="$build/fuzz-$t.log"
    if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$crashes/$t-" "$work" "$here/corpus/$t" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz_$t failed: the input is in $crashes/ (reproduce: $build/tests/fuzz/fuzz_$t FILE);" \
             "fix it, add a unit test, and copy the input into tests/fuzz/corpus/$t/" >&2
        exit 1
    fi
    # The last status line (runs, coverage, corpus) and the final stats.
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' '
    echo
done
