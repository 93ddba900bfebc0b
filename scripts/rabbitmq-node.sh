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
# Whoever started the epmd on PORT+2 (the server, or any rabbitmqctl: its
# CLI starts one when none answers), stop ends it once no node is
# registered with it; and ctl runs rabbitmqctl only while the node is
# registered there, so that a status query of a stopped node starts none.
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
console_log="$dir/console.log"
export ERL_EPMD_PORT=$((port + 2)) ERL_EPMD_ADDRESS=127.0.0.1

# A process that has not exited: the launcher, once this script is gone, is
# init's to reap, and stays a zombie (which kill -0 finds) until init does.
# shellcheck source=scripts/process-running.sh
source "$(dirname "$0")/process-running.sh"
alive() { running "$1"; }
read_pid() { cat "$1" 2>/dev/null || true; }
rabbitmqctl_bounded() { timeout "$1" rabbitmqctl -q -n "$node" "${@:2}"; }

# epmd's own client (epmd -names, -kill) only asks the epmd on
# ERL_EPMD_PORT; unlike rabbitmqctl, it never starts one.
epmd_answers() { timeout 5 epmd -names >/dev/null 2>&1; }
epmd_names() { timeout 5 epmd -names 2>/dev/null | grep '^name ' || true; }
# (no grep -q on the pipe: its early exit would fail the pipe, pipefail)
registered() {
    local names
    names=$(epmd_names)
    [[ $'\n'"$names" == *$'\n'"name ${node%@*} at port "* ]]
}

# The pid of whatever epmd listens on our epmd port, if any.
epmd_pid() {
    ss -Hltnp "sport = :$ERL_EPMD_PORT" 2>/dev/null |
        sed -n 's/.*("epmd",pid=\([0-9]*\),.*/\1/p' | head -n 1
}

# Ends the epmd on our port once no node is registered with it (a stopping
# node, or a rabbitmqctl's, can take a moment to go). epmd -kill is refused
# while a node is registered, so another node's epmd is never taken away.
stop_epmd() {
    epmd_answers || return 0
    local _ pid
    for _ in $(seq 50); do
        [ -z "$(epmd_names)" ] && break
        sleep 0.1
    done
    if [ -n "$(epmd_names)" ]; then
        echo "rabbitmq-node.sh: epmd on port $ERL_EPMD_PORT kept: nodes are registered with it:" >&2
        epmd_names >&2
        return 0
    fi
    timeout 5 epmd -kill >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        epmd_answers || return 0
        sleep 0.1
    done
    # It did not take the command: end the process behind the port.
    pid=$(epmd_pid)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = epmd ]; then
        terminate "$pid"
    fi
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
    local beam launcher
    beam=$(read_pid "$pidfile")
    launcher=$(read_pid "$launcher_pidfile")
    # rabbitmqctl only for a node registered with epmd: otherwise it would
    # start an epmd and then fail; TERM stops the node as well.
    if (alive "$beam" || alive "$launcher") && registered; then
        rabbitmqctl_bounded 60 stop >/dev/null 2>&1 || true
    fi
    terminate "$beam"
    terminate "$launcher"
    rm -f "$pidfile" "$launcher_pidfile"
    # left by earlier versions of this script
    rm -f "$dir/epmd-started-here.pid"
    stop_epmd
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
    # epmd (and would start an epmd of its own), so it waits for the
    # registration first, until the deadline or the server's exit.
    local ok=0 deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ] && alive "$(read_pid "$launcher_pidfile")"; do
        if registered &&
            rabbitmqctl_bounded 30 await_startup --timeout 25 >>"$console_log" 2>&1; then
            ok=1
            break
        fi
        sleep 0.5
    done
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
ctl)
    if ! registered; then
        echo "rabbitmq-node.sh: node $node is not running (not registered with epmd on port $ERL_EPMD_PORT)" >&2
        exit 69 # EX_UNAVAILABLE, as rabbitmqctl's own "node down"
    fi
    rabbitmqctl_bounded 60 "$@"
    ;;
*) usage ;;
esac
