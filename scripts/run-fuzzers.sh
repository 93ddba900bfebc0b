#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time. New inputs go to a working
# corpus under the fuzz build folder; the seeds in tests/fuzz/corpus stay as
# committed (copy a finding there by hand, with a test, when it matters).
#
#   scripts/run-fuzzers.sh FUZZ_BUILD_DIR SECONDS_PER_TARGET [TARGET...]
#
# TARGETs are names without the fuzz_ prefix (default: all of them, one after
# the other). A target's dictionary, tests/fuzz/<target>.dict, is used when
# there is one. Exits non-zero if any target crashed, leaked, timed out or
# ran out of memory; the input is in FUZZ_BUILD_DIR/artifacts/<target>/.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 FUZZ_BUILD_DIR SECONDS_PER_TARGET [TARGET...]" >&2
    exit 2
fi
build_dir=$1 seconds=$2
shift 2
fuzz="$(cd "$(dirname "$0")/.." && pwd)/tests/fuzz"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(pod_name creation_event token_verify redis_reply pod_template)
fi

status=0
for target in "${targets[@]}"; do
    binary="$build_dir/tests/fuzz_$target"
    work="$build_dir/corpus/$target"
    artifacts="$build_dir/artifacts/$target/"
    log="$build_dir/fuzz_$target.log"
    if [ ! -x "$binary" ]; then
        echo "no $binary: build the fuzz_targets target first (make fuzz)" >&2
        exit 2
    fi
    mkdir -p "$work" "$artifacts"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192
        -artifact_prefix="$artifacts" -print_final_stats=1)
    if [ -f "$fuzz/$target.dict" ]; then
        options+=(-dict="$fuzz/$target.dict")
    fi
    echo "== fuzz_$target: ${seconds}s"
    if ! "$binary" "${options[@]}" "$work" "$fuzz/corpus/$target" 2>"$log"; then
        echo "fuzz_$target found a failure; see $log and $artifacts" >&2
        tail -n 30 "$log" >&2
        status=1
    else
        # the last status line (execs, cov, ft, corpus, exec/s), then the totals
        grep -E '^#[0-9]+' "$log" | tail -n 1 || true
        grep -E '^Done [0-9]+ runs|^stat::number_of_executed_units|^stat::peak_rss_mb' \
            "$log" || true
    fi
done
exit $status
