# shellcheck shell=bash
# Sourced by the fixture scripts: stop_recorded_process PID PIDFILE SECONDS
# waits for PID to exit (after the caller asked it to), kills it after
# SECONDS, and removes PIDFILE. The pid is passed in: a server may remove its
# own pid file as it exits.
stop_recorded_process() {
    local pid=$1 pidfile=$2 seconds=$3
    for _ in $(seq $((seconds * 10))); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}
