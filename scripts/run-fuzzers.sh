#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time. New inputs go to a working
# corpus under the fuzz build folder; the seeds in tests/fuzz/corpus stay as
# committed (copy a finding there by hand, with a test, when it matters).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 FUZZ_BUILD_DIR SECONDS_PER_TARGET" >&2
    exit 2
fi
build_dir=$1 seconds=$2
seeds="$(cd "$(dirname "$0")/.." && pwd)/tests/fuzz/corpus"

status=0
for target in pod_name creation_event; do
    binary="$build_dir/tests/fuzz_$target"
    work="$build_dir/corpus/$target"
    artifacts="$build_dir/artifacts/$target/"
    mkdir -p "$work" "$artifacts"
    echo "== fuzz_$target: ${seconds}s"
    if ! "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 "$work" "$seeds/$target" \
        2>"$build_dir/fuzz_$target.log"; then
        echo "fuzz_$target found a failure; see $build_dir/fuzz_$target.log and $artifacts" >&2
        tail -n 30 "$build_dir/fuzz_$target.log" >&2
        status=1
    else
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$build_dir/fuzz_$target.log" || true
    fi
done
exit $status
