#!/usr/bin/env bash
# Starts or stops a private redis-server for one test run: a Unix socket in
# the given folder, no TCP port (so parallel runs never collide), no
# persistence. Used as a CTest fixture (tests/CMakeLists.txt).
set -euo pipefail
# shellcheck source=stop-process.sh
. "$(dirname "$0")/stop-process.sh"

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 dir=$2
socket="$dir/redis.sock" pidfile="$dir/redis.pid"

case "$action" in
start)
    "$0" stop "$dir"
    mkdir -p "$dir"
    rm -f "$socket" "$dir/redis.log"
    redis-server --port 0 --unixsocket "$socket" --unixsocketperm 700 \
        --save '' --appendonly no --daemonize yes --pidfile "$pidfile" \
        --logfile "$dir/redis.log" --dir "$dir"
    for _ in $(seq 100); do
        if redis-cli -s "$socket" ping 2>/dev/null | grep -q PONG; then
            exit 0
        fi
        sleep 0.1
    done
    echo "redis-server did not answer on $socket within 10 s; its log:" >&2
    cat "$dir/redis.log" >&2 || true
    exit 1
    ;;
stop)
    [ -f "$pidfile" ] || exit 0
    pid=$(cat "$pidfile")
    redis-cli -s "$socket" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    stop_recorded_process "$pid" "$pidfile" 10
    ;;
*) usage ;;
esac
