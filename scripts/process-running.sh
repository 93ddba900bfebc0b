# shellcheck shell=bash
# Sourced by scripts/stack.sh and scripts/rabbitmq-node.sh: the one rule for
# whether a process still runs.
#
# running PID: true while PID is a process that has not exited. A zombie
# (state Z) has exited, though kill -0 still succeeds on it until its parent
# (or init, for an orphan) reaps it.
running() {
    local stat
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != [ZX] ]]
}
