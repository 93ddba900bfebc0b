#!/usr/bin/env bash
# Starts or stops a private rabbitmq-server, without systemd: its own node
# name (derived from DIR, so parallel runs in other folders differ), data,
# logs, ports and epmd, listening on 127.0.0.1 only, with no plugins. Used by
# the local stack (scripts/stack.sh) and by the tests (tests/amqp.cmake,
# tests/support/servers.py).
#
#   rabbitmq-node.sh start DIR PORT         AMQP on PORT, Erlang distribution
#                                             on PORT+1, its epmd on PORT+2
#   rabbitmq-node.sh restart DIR PORT       stop and start, keeping durable queues,
#                                             exchanges and persistent messages
#   rabbitmq-node.sh stop DIR PORT
#   rabbitmq-node.sh ctl DIR PORT ARGS...   rabbitmqctl ARGS against that node
#
# A private epmd (ERL_EPMD_PORT) keeps parallel runs from sharing, and one
# run's stop from killing, the epmd another run's node is registered with.
# Debian's rabbitmq-server and rabbitmqctl, run as root, re-run themselves as
# the rabbitmq user (and so share its Erlang cookie): DIR is owned by it.
# Do not pick PORT in 35672-35682: rabbitmqctl's own distribution ports.
set -euo pipefail

usage() {
    echo "usage: $0 start|restart|stop DIR PORT | $0 ctl DIR PORT ARGS..." >&2
    exit 2
}
[ $# -ge 3 ] || usage
action=$1 port=$3
dir=$(realpath -m "$2")
shift 3
case "$port" in '' | *[!0-9]*) usage ;; esac

node="pod-router-test-$(printf '%s' "$dir" | sha256sum | cut -c1-12)@localhost"
pidfile="$dir/rabbitmq.pid"             # beam's pid, written by rabbitmq-server itself
launcher_pidfile="$dir/launcher.pid"    # the wrapper started in the background
epmd_pidfile="$dir/epmd-started-here.pid"
console_log="$dir/console.log"
export ERL_EPMD_PORT=$((port + 2)) ERL_EPMD_ADDRESS=127.0.0.1

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
read_pid() { cat "$1" 2>/dev/null || true; }
rabbitmqctl_bounded() { timeout "$1" rabbitmqctl -q -n "$node" "${@:2}"; }

# The pid of whatever epmd listens on our epmd port, if any.
epmd_pid() {
    ss -Hltnp "sport = :$ERL_EPMD_PORT" 2>/dev/null |
        sed -n 's/.*("epmd",pid=\([0-9]*\),.*/\1/p' | head -n 1
}

log_tail() {
    echo "--- $console_log" >&2
    tail -n 30 "$console_log" >&2 2>/dev/null || true
    for f in "$dir"/log/*.log; do
        [ -f "$f" ] || continue
        echo "--- $f" >&2
        tail -n 30 "$f" >&2 || true
    done
}

# Terminates one of our recorded processes: TERM, up to 10 s, then KILL.
terminate() {
    local pid=$1
    alive "$pid" || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    [ -d "$dir" ] || return 0
    local beam launcher epmd
    beam=$(read_pid "$pidfile")
    launcher=$(read_pid "$launcher_pidfile")
    if alive "$beam" || alive "$launcher"; then
        rabbitmqctl_bounded 60 stop >/dev/null 2>&1 || true
    fi
    terminate "$beam"
    terminate "$launcher"
    rm -f "$pidfile" "$launcher_pidfile"

    # Only an epmd this script started, once no node is registered with it.
    epmd=$(read_pid "$epmd_pidfile")
    if alive "$epmd" && [ "$(cat "/proc/$epmd/comm" 2>/dev/null)" = epmd ]; then
        for _ in $(seq 20); do
            epmd -names 2>/dev/null | grep -q '^name ' || break
            sleep 0.1
        done
        if ! epmd -names 2>/dev/null | grep -q '^name '; then
            terminate "$epmd"
        fi
    fi
    rm -f "$epmd_pidfile"
}

start() {
    stop
    # Fresh data every run: no queue or message survives from the last one.
    # A restart keeps it, as a real broker's restart would.
    if [ "${1:-}" != keep-data ]; then
        rm -rf "$dir/mnesia" "$dir/log"
    fi
    mkdir -p "$dir/mnesia" "$dir/log"
    echo '[].' >"$dir/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$dir"
    local epmd_before
    epmd_before=$(epmd_pid)

    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$pidfile" \
        RABBITMQ_NODENAME="$node" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT=$((port + 1)) \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        nohup rabbitmq-server >"$console_log" 2>&1 </dev/null &
    echo $! >"$launcher_pidfile"

    # await_startup fails at once while the node is not yet registered with
    # epmd, so it is retried until the deadline or the server's exit.
    local ok=0 deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ] && alive "$(read_pid "$launcher_pidfile")"; do
        if rabbitmqctl_bounded 30 await_startup --timeout 25 >>"$console_log" 2>&1; then
            ok=1
            break
        fi
        sleep 0.5
    done
    if [ -z "$epmd_before" ]; then
        local epmd
        epmd=$(epmd_pid)
        [ -z "$epmd" ] || echo "$epmd" >"$epmd_pidfile"
    fi
    if [ "$ok" = 1 ]; then
        return 0
    fi
    echo "rabbitmq-server $node did not start on port $port within 120 s; its logs:" >&2
    log_tail
    stop
    return 1
}

case "$action" in
start) start ;;
restart) start keep-data ;;
stop) stop ;;
ctl) rabbitmqctl_bounded 60 "$@" ;;
*) usage ;;
esac
