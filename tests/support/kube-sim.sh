#!/usr/bin/env bash
# Starts or stops a private kube-sim for one test run (a CTest fixture):
# any free port, state in DIR, DIR/kubeconfig once it is ready.
set -euo pipefail
# shellcheck source=stop-process.sh
. "$(dirname "$0")/stop-process.sh"

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 dir=$2
here=$(cd "$(dirname "$0")" && pwd)
pidfile="$dir/kube-sim.pid"

case "$action" in
start)
    "$0" stop "$dir"
    mkdir -p "$dir"
    rm -f "$dir/kubeconfig"
    # Its own pod CIDR, so that it never hands out another kube-sim's addresses.
    block=$((RANDOM % 3200))
    "$here/../../scripts/kube-sim/kube-sim" --state-dir "$dir" --port 0 --start-delay 0.2 \
        --pod-cidr "127.$((20 + block / 16)).$(((block % 16) * 16)).0/20" \
        >"$dir/kube-sim.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 200); do
        [ -f "$dir/kubeconfig" ] && exit 0
        kill -0 "$(cat "$pidfile")" 2>/dev/null || break
        sleep 0.1
    done
    echo "kube-sim did not start; its log:" >&2
    cat "$dir/kube-sim.log" >&2 || true
    exit 1
    ;;
stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    # kube-sim stops its pods first: give it their grace periods
    stop_recorded_process "$pid" "$pidfile" 20
    ;;
*) usage ;;
esac
