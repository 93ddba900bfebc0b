#!/usr/bin/env bash
# The whole pod-router system on this machine, in the background:
#   redis-server, rabbitmq-server, a Kubernetes API (kube-sim, the local
#   stand-in, or with POD_ROUTER_CLUSTER=real the real control plane of
#   scripts/cluster.sh; both know an image kube-sim/demo-process whose pods
#   are processes of their own), the controller's RBAC from manifests/ applied to it,
#   pod-router-controller running as that service account, and nginx with
#   the module.
#
#   scripts/stack.sh up        start what does not answer; return once all answer
#   scripts/stack.sh down      stop everything it started; nothing is left behind
#   scripts/stack.sh status    one line per component; exit 1 if one does not answer
#   scripts/stack.sh logs [C]  the last lines of every log, or follow C's
#
# A component is up when it answers, not when its pid exists: Redis PING
# (with the password), RabbitMQ rabbitmqctl status, kube-sim /readyz over
# TLS, the controller /readyz, nginx /pod-router/metrics on the gateway port.
# A pid outlives its process: a killed process stays a zombie, which kill -0
# still finds, until its parent reaps it. `up` starts afresh a component
# whose process is gone or a zombie; `down` leaves no process behind, epmd
# included.
#
# All state lives under POD_ROUTER_RUN_DIR (default .run/): pid files, each
# component's log, kube-sim's kubeconfig, and secrets/ (mode 0700): the
# Redis password and RabbitMQ's user:password (and, in signed mode, the
# identity secret), random, created by the first `up` and kept after. Every
# component reads them from there, never from a command line or the
# environment. Settings, from the environment:
#   POD_ROUTER_IDENTITY          header: trust X-User-ID, the seed's demo  (header)
#                                signed: a token signed with secrets/identity-secret,
#                                        sent as "Authorization: Bearer TOKEN"
#   POD_ROUTER_PORT              gateway port on 127.0.0.1        (8080)
#   POD_ROUTER_IDLE_TIMEOUT      seconds before an idle pod goes  (600)
#   POD_ROUTER_REAP_INTERVAL     how often the reaper looks       (10s)
#   POD_ROUTER_WARM_POOL_SIZE    Ready pods kept for new users    (0: none)
#   POD_ROUTER_WAIT_TIMEOUT      how long a request waits         (60s)
#   POD_ROUTER_REDIS_PORT        (16379)   POD_ROUTER_AMQP_PORT   (26672; +1, +2 taken too)
#   POD_ROUTER_KUBE_PORT         (16443)   POD_ROUTER_CONTROLLER_PORT (8081: /metrics)
#   POD_ROUTER_POD_CIDR          addresses of pods (127.1.0.0/16)
#   POD_ROUTER_POD_TEMPLATE      the user pod (manifests/base/controller/pod-template.yaml)
#   POD_ROUTER_CLUSTER           kube-sim (default) or real: etcd, kube-apiserver,
#                                kube-scheduler, kube-controller-manager and our
#                                node agent (scripts/cluster.sh, docs/cluster.md);
#                                or node: everything as pods on a real node
#                                (scripts/node-stack.sh, docs/node.md)
#   POD_ROUTER_ETCD_PORT         the real cluster's etcd (12379; +1 taken too)
#   POD_ROUTER_KUBE_START_DELAY  the node's container start delay in s (1)
#   POD_ROUTER_KUBE_SCHEDULE_DELAY  kube-sim's scheduling delay in s: a new pod
#                                stays unbound (stage "creating") that long (0)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=$(realpath -m "${POD_ROUTER_RUN_DIR:-$repo/.run}")
port=${POD_ROUTER_PORT:-8080}
idle_timeout=${POD_ROUTER_IDLE_TIMEOUT:-600}
wait_timeout=${POD_ROUTER_WAIT_TIMEOUT:-60s}
redis_port=${POD_ROUTER_REDIS_PORT:-16379}
amqp_port=${POD_ROUTER_AMQP_PORT:-26672}
kube_port=${POD_ROUTER_KUBE_PORT:-16443}
controller_port=${POD_ROUTER_CONTROLLER_PORT:-8081}
pod_cidr=${POD_ROUTER_POD_CIDR:-127.1.0.0/16}
pod_template=${POD_ROUTER_POD_TEMPLATE:-$repo/manifests/base/controller/pod-template.yaml}
start_delay=${POD_ROUTER_KUBE_START_DELAY:-1}
schedule_delay=${POD_ROUTER_KUBE_SCHEDULE_DELAY:-0}
controller_bin=${POD_ROUTER_CONTROLLER:-$repo/build/controller/pod-router-controller}
module=${POD_ROUTER_MODULE:-$repo/build/ngx_http_pod_router_module.so}
nginx_bin=${POD_ROUTER_NGINX:-/usr/sbin/nginx}

identity_mode=${POD_ROUTER_IDENTITY:-header}

logs="$run_dir/logs"
pids="$run_dir/pids"
secrets="$run_dir/secrets"
etcd_port=${POD_ROUTER_ETCD_PORT:-12379}
case "${POD_ROUTER_CLUSTER:-kube-sim}" in
kube-sim) kube="kube-sim" ;;
real) kube=cluster ;;
# Everything as pods on a real node: another shape, another script.
node) exec "$repo/scripts/node-stack.sh" "$@" ;;
*) echo "stack.sh: POD_ROUTER_CLUSTER=$POD_ROUTER_CLUSTER: use kube-sim (the default), real or node" >&2; exit 2 ;;
esac
kube_dir="$run_dir/$kube"
kubeconfig="$kube_dir/kubeconfig"
kube_started=0 # set by up_kube_sim or up_cluster when it starts one
components=(redis rabbitmq "$kube" controller nginx)
cluster_args=(--dir "$kube_dir" --api-port "$kube_port" --etcd-port "$etcd_port" --pod-cidr "$pod_cidr"
    --start-delay "$start_delay" --image-map "$run_dir/kube-sim-images.json"
    --audit-log "$logs/kube-apiserver-audit.log")

say() { printf '%s\n' "$*"; }
fail() { printf 'stack.sh: %s\n' "$*" >&2; exit 1; }

pid_of() { cat "$pids/$1.pid" 2>/dev/null || true; }

# running PID: not exited, a zombie excluded
# shellcheck source=scripts/process-running.sh
source "$repo/scripts/process-running.sh"
alive() { running "$(pid_of "$1")"; }

not_ready() {
    printf 'stack.sh: %s is not ready: %s; the end of %s:\n' "$1" "$2" "$logs/$1.log" >&2
    tail -n 30 "$logs/$1.log" >&2 2>/dev/null || true
    exit 1
}

# Polls whether NAME answers (`answers`) every 0.2 s for up to SECONDS while
# its process runs: 0 once it does, 1 if the process is gone, 2 on the
# deadline.
# An answer without the process does not count: nginx's workers outlive a
# master killed with SIGKILL, and answer, but nothing can reload or stop
# them any more.
answers_within() {
    local name=$1 seconds=$2
    local deadline=$((SECONDS + seconds))
    while :; do
        alive "$name" || return 1
        if answers "$name" >/dev/null 2>&1; then
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || return 2
        sleep 0.2
    done
}

# For a component just launched: waits until it answers; fails with
# its log tail if it exits first or does not answer within SECONDS.
await() {
    local name=$1 seconds=$2 result=0
    answers_within "$@" || result=$?
    case $result in
    0) ;;
    1) not_ready "$name" "it exited" ;;
    *) not_ready "$name" "no answer within $seconds s" ;;
    esac
}

# For a component that may be running already: succeeds once it answers;
# fails (1) if there is no process, or it exits while we wait (a
# server still stopping), having stopped what it left behind, so that the
# caller starts it afresh. A process that runs but never answers within
# SECONDS is not replaced: up fails.
answers_already() {
    local name=$1 seconds=$2 result=0
    answers_within "$@" || result=$?
    case $result in
    0) return 0 ;;
    1)
        stop_process "$name" TERM 5
        return 1
        ;;
    *) not_ready "$name" "pid $(pid_of "$name") runs but does not answer within $seconds s (scripts/stack.sh down stops it)" ;;
    esac
}

# Starts a command in the background, in a session of its own, so that
# terminal signals miss it (Ctrl-C reaches run.sh, which stops the stack in
# order). Its parent is a shell that only waits for it: it is reaped the
# moment it exits, whereas a child left to init (once this script has
# exited) can stay a zombie as long as init takes to reap it. The pid file
# holds the component's pid; NAME.launcher the waiting shell's.
launch() {
    local name=$1
    shift
    rm -f "$pids/$name.pid" "$pids/$name.launcher"
    # shellcheck disable=SC2016 # expanded by the launched shell
    setsid bash -c 'echo $$ >"$1.launcher"; "${@:2}" & echo $! >"$1.tmp"; mv "$1.tmp" "$1.pid"; wait $!' \
        pod-router-launch "$pids/$name" "$@" </dev/null >>"$logs/$name.log" 2>&1 &
    local deadline=$((SECONDS + 10))
    until [ -s "$pids/$name.pid" ]; do
        [ "$SECONDS" -lt "$deadline" ] || not_ready "$name" "it was not launched"
        sleep 0.05
    done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# 32 random bytes as hex: safe in redis.conf, rabbitmq.conf and a
# user:password line.
random_hex() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# Writes secrets/NAME once (mode 0600) with VALUE; an existing file is kept,
# so that a restarted stack keeps its credentials. VALUE only ever passes
# through this shell's builtins, never a command line.
secret_once() {
    local file=$secrets/$1
    [ -s "$file" ] && return 0
    (
        umask 077
        printf '%s\n' "$2" >"$file.tmp"
    )
    mv "$file.tmp" "$file"
}

make_secrets() {
    mkdir -p "$secrets"
    chmod 700 "$secrets"
    secret_once redis-password "$(random_hex)"
    secret_once amqp-credentials "pod-router:$(random_hex)"
    if [ "$identity_mode" = signed ]; then
        secret_once identity-secret "$(random_hex)"
    fi
}

# The first line of secrets/NAME, read by bash itself (no cat on a command line).
secret() {
    local line=
    IFS= read -r line <"$secrets/$1" || [ -n "$line" ] || return 1
    [ -n "$line" ] || fail "$secrets/$1 is empty"
    printf '%s' "$line"
}

# redis-cli ARGS... with the password, which goes in on its standard input
# (AUTH, then the command), never in its arguments or environment.
redis_authed() {
    # bounded: a stopped (SIGSTOP) or overloaded server would hold it forever
    { printf 'AUTH %s\n' "$(secret redis-password)"; printf '%s\n' "$*"; } |
        timeout 5 redis-cli -p "$redis_port"
}
redis_ping() { redis_authed PING | grep -qx PONG; }
rabbitmq_status() {
    "$repo/scripts/rabbitmq-node.sh" ctl "$run_dir/rabbitmq" "$amqp_port" status
}
# /readyz needs no token; its TLS certificate is checked against kube-sim's
# CA. The kubeconfig is written once kube-sim serves.
kube_sim_ready() {
    [ -f "$kubeconfig" ] &&
        curl -fsS -o /dev/null --max-time 2 --cacert "$kube_dir/ca.crt" \
            "https://127.0.0.1:$kube_port/readyz"
}
controller_ready() { http_ok "http://127.0.0.1:$controller_port/readyz"; }
# The module's own location: nginx answers, with the module loaded.
nginx_ready() {
    curl -fsS -o /dev/null --max-time 2 -H "Host: local.gateway.com" \
        "http://127.0.0.1:$port/pod-router/metrics"
}
answers() {
    case $1 in
    redis) redis_ping ;;
    rabbitmq) rabbitmq_status ;;
    kube-sim) kube_sim_ready ;;
    cluster) "$repo/scripts/cluster.sh" status "${cluster_args[@]}" ;;
    controller) controller_ready ;;
    nginx) nginx_ready ;;
    esac
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up_redis() {
    answers_already redis 20 && return 0
    port_free "$redis_port" || fail "port $redis_port (POD_ROUTER_REDIS_PORT) is taken"
    mkdir -p "$run_dir/redis"
    # The password is in the configuration file (mode 0600), not on the
    # command line, where ps would show it.
    local password
    password=$(secret redis-password)
    (
        umask 077
        cat >"$run_dir/redis/redis.conf" <<CONF
# Written by scripts/stack.sh on every start.
port $redis_port
bind 127.0.0.1
protected-mode yes
dir "$run_dir/redis"
save ""
appendonly yes
requirepass $password
CONF
    )
    launch redis redis-server "$run_dir/redis/redis.conf"
    await redis 20
}

up_rabbitmq() {
    # rabbitmq-node.sh start replaces a node that does not answer.
    rabbitmq_status >/dev/null 2>&1 && return 0
    port_free "$amqp_port" || fail "port $amqp_port (POD_ROUTER_AMQP_PORT) is taken"
    # the node runs as the rabbitmq user: its folder must be reachable by it
    chmod 755 "$run_dir"
    # Its only user is secrets/amqp-credentials' (the node starts from empty
    # data, so it is created at boot; guest never is), with all rights on /
    # and no management tags.
    # The file, mode 0600, becomes the rabbitmq user's (rabbitmq-node.sh).
    local credentials
    credentials=$(secret amqp-credentials)
    [[ "$credentials" == ?*:?* ]] || fail "$secrets/amqp-credentials must hold user:password"
    mkdir -p "$run_dir/rabbitmq"
    (
        umask 077
        cat >"$run_dir/rabbitmq/rabbitmq.conf" <<CONF
# Written by scripts/stack.sh on every start.
default_vhost = /
default_user = ${credentials%%:*}
default_pass = ${credentials#*:}
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
default_user_tags.administrator = false
loopback_users.guest = true
CONF
    )
    "$repo/scripts/rabbitmq-node.sh" start "$run_dir/rabbitmq" "$amqp_port" \
        >>"$logs/rabbitmq.log" 2>&1 || {
        tail -n 30 "$logs/rabbitmq.log" >&2
        fail "rabbitmq-server did not start"
    }
}

# Besides the demo images the node serves in-process, one whose pods are
# processes of their own, which an operator (or a test) can kill.
write_image_map() {
    cat >"$run_dir/kube-sim-images.json" <<JSON
{"images": {"kube-sim/demo-process": {
    "command": ["/usr/bin/python3", "-m", "kubesim.demo_pod", "--name", "{pod_name}",
                "--ip", "{pod_ip}", "--port", "{port}"],
    "env": {"PYTHONPATH": "$repo/scripts/kube-sim"}}}}
JSON
}

# The namespaces, service accounts and the controller's RBAC, exactly as
# a cluster gets them (kustomize overlay "local").
apply_local_overlay() {
    kubectl --kubeconfig "$kubeconfig" apply -k "$repo/manifests/overlays/local" \
        >>"$logs/$kube.log" 2>&1 ||
        fail "applying manifests/overlays/local to $kube failed (see $logs/$kube.log)"
}

up_kube_sim() {
    answers_already kube-sim 30 && return 0
    port_free "$kube_port" || fail "port $kube_port (POD_ROUTER_KUBE_PORT) is taken"
    rm -f "$kubeconfig"
    write_image_map
    # A credential for the gateway too, bound to nothing: it must have no
    # API access at all (the end-to-end tests check for 403).
    launch kube-sim "$repo/scripts/kube-sim/kube-sim" --state-dir "$run_dir/kube-sim" \
        --port "$kube_port" --pod-cidr "$pod_cidr" --start-delay "$start_delay" \
        --schedule-delay "$schedule_delay" \
        --image-map "$run_dir/kube-sim-images.json" --audit-log "$logs/kube-sim-audit.log" \
        --service-account pod-router-system/pod-router-controller \
        --service-account pod-router-system/pod-router-gateway
    await kube-sim 30
    kube_started=1
    apply_local_overlay
}

# The real control plane: cluster.sh owns its processes (and their pid
# files, under $kube_dir); it is up when cluster.sh status says so.
up_cluster() {
    "$repo/scripts/cluster.sh" status "${cluster_args[@]}" >/dev/null 2>&1 && return 0
    port_free "$kube_port" || fail "port $kube_port (POD_ROUTER_KUBE_PORT) is taken"
    write_image_map
    "$repo/scripts/cluster.sh" up "${cluster_args[@]}" >>"$logs/cluster.log" 2>&1 || {
        tail -n 30 "$logs/cluster.log" >&2
        fail "the control plane did not start (scripts/cluster.sh logs --dir $kube_dir)"
    }
    kube_started=1
    apply_local_overlay
    # Service-account tokens from TokenRequest, as a pod's projected token
    # (a day: make run is a demo; the controller re-reads a tokenFile, see
    # docs/cluster.md). The gateway's is bound to nothing: it must get 403.
    local account
    for account in pod-router-controller pod-router-gateway; do
        "$repo/scripts/cluster.sh" token "pod-router-system/$account" --duration 24h \
            "${cluster_args[@]}" >>"$logs/cluster.log" 2>&1 ||
            fail "no token for $account (see $logs/cluster.log)"
    done
}

up_controller() {
    # A new kube-sim made new tokens: a running controller still presents
    # the old one (its kubeconfig's token is read once), and would never be
    # ready again.
    if [ "$kube_started" = 1 ] && alive controller; then
        say "  restarting the controller for the new $kube"
        stop_process controller TERM 30
    fi
    answers_already controller 30 && return 0
    [ -x "$controller_bin" ] || fail "$controller_bin is not built: run make"
    launch controller "$controller_bin" run \
        --kubeconfig "$kube_dir/kubeconfig.pod-router-system.pod-router-controller" \
        --namespace pod-router-users --pod-template "$pod_template" \
        --redis "127.0.0.1:$redis_port" --redis-password-file "$secrets/redis-password" \
        --amqp-url "amqp://127.0.0.1:$amqp_port/" --amqp-credentials-file "$secrets/amqp-credentials" \
        --listen "127.0.0.1:$controller_port" --idle-timeout "$idle_timeout"
    await controller 30
}

# A running nginx keeps the mode it was started in.
same_identity_mode() {
    local started_in
    started_in=$(cat "$run_dir/nginx/identity-mode" 2>/dev/null || echo header)
    [ "$started_in" = "$identity_mode" ] ||
        fail "nginx runs with POD_ROUTER_IDENTITY=$started_in, not $identity_mode: stop it first (scripts/stack.sh down)"
}

up_nginx() {
    if answers_already nginx 20; then
        same_identity_mode
        return 0
    fi
    local prefix="$run_dir/nginx"
    [ -f "$module" ] || fail "$module is not built: run make"
    port_free "$port" || fail "port $port (POD_ROUTER_PORT) is taken"
    mkdir -p "$prefix"
    sed -e "s|@IDENTITY_SECRET@|$secrets/identity-secret|g" \
        "$repo/scripts/local-stack/identity-$identity_mode.conf.in" >"$prefix/identity.conf"
    printf '%s\n' "$identity_mode" >"$prefix/identity-mode"
    # A quarter of the idle timeout (given in seconds), between 1 s and 10 s.
    local touch=10
    if [[ "$idle_timeout" =~ ^[0-9]+$ ]]; then
        touch=$((idle_timeout / 4))
        touch=$((touch < 1 ? 1 : touch > 10 ? 10 : touch))
    fi
    sed -e "s|@MODULE@|$module|g" -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" \
        -e "s|@TOUCH_INTERVAL@|${touch}s|g" \
        -e "s|@REDIS_PORT@|$redis_port|g" -e "s|@AMQP_PORT@|$amqp_port|g" \
        -e "s|@POD_CIDR@|$pod_cidr|g" -e "s|@WAIT_TIMEOUT@|$wait_timeout|g" \
        -e "s|@SECRETS@|$secrets|g" \
        "$repo/scripts/local-stack/nginx.conf.in" >"$prefix/nginx.conf"
    "$nginx_bin" -t -q -p "$prefix" -c "$prefix/nginx.conf" 2>>"$logs/nginx.log" ||
        fail "nginx -t refused $prefix/nginx.conf (see $logs/nginx.log)"
    launch nginx "$nginx_bin" -p "$prefix" -c "$prefix/nginx.conf"
    await nginx 20
}

# A path as the user can type it: relative to the current folder if inside it.
shown() {
    case "$1" in
    "$PWD"/*) printf '%s' "${1#"$PWD"/}" ;;
    *) printf '%s' "$1" ;;
    esac
}

identity_note() {
    if [ "$identity_mode" = header ]; then
        say ""
        say "Identity: POD_ROUTER_IDENTITY=header. nginx trusts the X-User-ID header from"
        say "any client: anyone who can reach 127.0.0.1:$port can claim to be any user."
        say "POD_ROUTER_IDENTITY=signed asks for a signed token instead."
    else
        local secret_file controller
        secret_file=$(shown "$secrets/identity-secret")
        controller=$(shown "$controller_bin")
        say ""
        say "Identity: POD_ROUTER_IDENTITY=signed. A request needs \"Authorization: Bearer TOKEN\","
        say "a token signed with $secret_file; X-User-ID is ignored. Mint one and use it:"
        say "  curl -H \"Host: local.gateway.com\" -H \"Authorization: Bearer \$($controller sign --secret-file $secret_file alice)\" http://127.0.0.1:$port/"
    fi
}

up() {
    case "$identity_mode" in
    header | signed) ;;
    *) fail "POD_ROUTER_IDENTITY=$identity_mode: use header (trust X-User-ID, the default) or signed (signed tokens)" ;;
    esac
    # Refused before anything starts. An nginx that does not answer (one
    # still stopping after SIGQUIT) is checked by up_nginx, if it comes to
    # answer rather than exit.
    if alive nginx && nginx_ready >/dev/null 2>&1; then
        same_identity_mode
    fi
    mkdir -p "$logs" "$pids"
    make_secrets
    local step
    for step in redis rabbitmq "$kube" controller nginx; do
        local started=$SECONDS
        "up_${step//-/_}"
        say "  ready  $step ($((SECONDS - started)) s)"
    done
    identity_note
}

# Up to SECONDS for PID to exit (or become a zombie); false if it has not.
gone_within() {
    local pid=$1 deadline=$((SECONDS + $2))
    while running "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# SIGNAL, then up to SECONDS for the process to go, then SIGKILL; then the
# shell that launched it, which exits as soon as it has reaped it (so that
# nothing is left once down returns).
stop_process() {
    local name=$1 signal=$2 seconds=$3 pid launcher
    pid=$(pid_of "$name")
    launcher=$(cat "$pids/$name.launcher" 2>/dev/null || true)
    if running "$pid"; then
        kill -"$signal" "$pid" 2>/dev/null || true
        if ! gone_within "$pid" "$seconds"; then
            say "  $name did not stop within $seconds s: killed"
            kill -KILL "$pid" 2>/dev/null || true
            gone_within "$pid" 5 || true
        fi
    fi
    gone_within "$launcher" 5 || true
    sweep_session "$name"
    rm -f "$pids/$name.pid" "$pids/$name.launcher"
}

# Stops what is left in NAME's session once NAME has stopped: processes it
# started and did not stop (nginx's workers outlive a master killed with
# SIGKILL). The session is its launcher's (setsid); its id is the
# launcher's pid, which the kernel does not give to another process while
# the session has a member. It is not ours if that pid is another running
# process, or if the file is older than the last boot.
sweep_session() {
    local name=$1 file=$pids/$1.launcher sid boot members='' pid
    sid=$(cat "$file" 2>/dev/null || true)
    [[ "$sid" =~ ^[0-9]+$ ]] || return 0
    boot=$(sed -n 's/^btime //p' /proc/stat)
    [ "$(stat -c %Y "$file")" -ge "$boot" ] || return 0
    if running "$sid" && ! grep -qa pod-router-launch "/proc/$sid/cmdline" 2>/dev/null; then
        return 0
    fi
    # (zombies aside: the launcher's own, say, until init reaps it)
    for pid in $(pgrep -s "$sid" || true); do
        running "$pid" && members+=" $pid"
    done
    [ -n "$members" ] || return 0
    say "  $name left processes behind:$members (stopped)"
    # shellcheck disable=SC2086 # one pid a word
    kill -TERM $members 2>/dev/null || true
    for pid in $members; do
        if ! gone_within "$pid" 5; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

down() {
    stop_process nginx QUIT 15
    stop_process controller TERM 30
    stop_process kube-sim TERM 20
    if [ -d "$run_dir/cluster" ]; then
        "$repo/scripts/cluster.sh" down "${cluster_args[@]}" >>"$logs/cluster.log" 2>&1 || true
    fi
    "$repo/scripts/rabbitmq-node.sh" stop "$run_dir/rabbitmq" "$amqp_port" \
        >>"$logs/rabbitmq.log" 2>&1 || true
    stop_process redis TERM 10
    say "  stopped"
}

status() {
    local down=0 name
    for name in "${components[@]}"; do
        if [ "$name" = rabbitmq ]; then
            if rabbitmq_status >/dev/null 2>&1; then
                say "  up    rabbitmq  amqp://127.0.0.1:$amqp_port/"
            else
                say "  DOWN  rabbitmq"
                down=1
            fi
        elif [ "$name" = cluster ]; then
            if answers cluster >/dev/null 2>&1; then
                say "  up    cluster  https://127.0.0.1:$kube_port (scripts/cluster.sh status --dir $kube_dir)"
            else
                say "  DOWN  cluster"
                down=1
            fi
        elif ! alive "$name"; then
            # (what may still answer for it, nginx's workers orphaned by a
            # killed master, is stopped by up or down)
            say "  DOWN  $name"
            down=1
        elif answers "$name" >/dev/null 2>&1; then
            say "  up    $name  (pid $(pid_of "$name"))"
        else
            say "  DOWN  $name  (pid $(pid_of "$name") runs but does not answer)"
            down=1
        fi
    done
    return "$down"
}

logs_of() {
    if [ $# -eq 1 ]; then
        exec tail -n 50 -F "$logs/$1.log"
    fi
    local name
    for name in "${components[@]}"; do
        say "==> $logs/$name.log <=="
        tail -n 10 "$logs/$name.log" 2>/dev/null || true
    done
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
logs) shift; logs_of "$@" ;;
*) echo "usage: $0 up | down | status | logs [redis|rabbitmq|kube-sim|cluster|controller|nginx]" >&2; exit 2 ;;
esac
