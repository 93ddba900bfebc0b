# Sourced by the fixture scripts: stop_recorded_process PIDFILE SECONDS
# waits for the recorded process to exit (after the caller asked it to),
# kills it after SECONDS, and removes the pid file.
stop_recorded_process() {
    local pidfile=$1 seconds=$2 pid
    pid=$(cat "$pidfile")
    for _ in $(seq $((seconds * 10))); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}
