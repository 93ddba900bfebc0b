#!/usr/bin/env bash
# The whole pod-router system on this machine, in the background:
#   redis-server, rabbitmq-server, kube-sim (the local Kubernetes API, which
#   also knows an image kube-sim/demo-process whose pods are processes of
#   their own), the controller's RBAC from manifests/ applied to it,
#   pod-router-controller running as that service account, and nginx with
#   the module.
#
#   scripts/stack.sh up        start what is not running; return once all is ready
#   scripts/stack.sh down      stop everything it started; nothing is left behind
#   scripts/stack.sh status    one line per component; exit 1 if one is down
#   scripts/stack.sh logs [C]  the last lines of every log, or follow C's
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
#   POD_ROUTER_KUBE_START_DELAY  kube-sim's container start delay in s (1)
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
kubeconfig="$run_dir/kube-sim/kubeconfig"
components=(redis rabbitmq kube-sim controller nginx)

say() { printf '%s\n' "$*"; }
fail() { printf 'stack.sh: %s\n' "$*" >&2; exit 1; }

pid_of() { cat "$pids/$1.pid" 2>/dev/null || true; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# Polls CHECK (a command) every 0.2 s for up to SECONDS; fails with the
# component's log tail if it never passes or the process dies.
await() {
    local name=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [ "$name" != rabbitmq ] && ! alive "$name"; then
            break
        fi
        sleep 0.2
    done
    printf 'stack.sh: %s is not ready; the end of %s:\n' "$name" "$logs/$name.log" >&2
    tail -n 30 "$logs/$name.log" >&2 2>/dev/null || true
    exit 1
}

# Starts a command in the background, detached from this shell's terminal
# signals (Ctrl-C reaches run.sh, which stops the stack in order).
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 &
    echo $! >"$pids/$name.pid"
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
    { printf 'AUTH %s\n' "$(secret redis-password)"; printf '%s\n' "$*"; } |
        redis-cli -p "$redis_port"
}
redis_ping() { redis_authed PING | grep -qx PONG; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

up_redis() {
    alive redis && return 0
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
    await redis 20 redis_ping
}

up_rabbitmq() {
    if "$repo/scripts/rabbitmq-node.sh" ctl "$run_dir/rabbitmq" "$amqp_port" \
        status >/dev/null 2>&1; then
        return 0
    fi
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

up_kube_sim() {
    alive kube-sim && return 0
    port_free "$kube_port" || fail "port $kube_port (POD_ROUTER_KUBE_PORT) is taken"
    rm -f "$kubeconfig"
    # Besides the demo images kube-sim serves in-process, one whose pods are
    # processes of their own, which an operator (or a test) can kill.
    cat >"$run_dir/kube-sim-images.json" <<JSON
{"images": {"kube-sim/demo-process": {
    "command": ["/usr/bin/python3", "-m", "kubesim.demo_pod", "--name", "{pod_name}",
                "--ip", "{pod_ip}", "--port", "{port}"],
    "env": {"PYTHONPATH": "$repo/scripts/kube-sim"}}}}
JSON
    # A credential for the gateway too, bound to nothing: it must have no
    # API access at all (the end-to-end tests check for 403).
    launch kube-sim "$repo/scripts/kube-sim/kube-sim" --state-dir "$run_dir/kube-sim" \
        --port "$kube_port" --pod-cidr "$pod_cidr" --start-delay "$start_delay" \
        --schedule-delay "$schedule_delay" \
        --image-map "$run_dir/kube-sim-images.json" --audit-log "$logs/kube-sim-audit.log" \
        --service-account pod-router-system/pod-router-controller \
        --service-account pod-router-system/pod-router-gateway
    await kube-sim 30 test -f "$kubeconfig"
    # The namespaces, service accounts and the controller's RBAC, exactly as
    # a cluster gets them (kustomize overlay "local").
    kubectl --kubeconfig "$kubeconfig" apply -k "$repo/manifests/overlays/local" \
        >>"$logs/kube-sim.log" 2>&1 ||
        fail "applying manifests/overlays/local to kube-sim failed (see $logs/kube-sim.log)"
}

up_controller() {
    alive controller && return 0
    [ -x "$controller_bin" ] || fail "$controller_bin is not built: run make"
    launch controller "$controller_bin" run \
        --kubeconfig "$run_dir/kube-sim/kubeconfig.pod-router-system.pod-router-controller" \
        --namespace pod-router-users --pod-template "$pod_template" \
        --redis "127.0.0.1:$redis_port" --redis-password-file "$secrets/redis-password" \
        --amqp-url "amqp://127.0.0.1:$amqp_port/" --amqp-credentials-file "$secrets/amqp-credentials" \
        --listen "127.0.0.1:$controller_port" --idle-timeout "$idle_timeout"
    await controller 30 http_ok "http://127.0.0.1:$controller_port/readyz"
}

up_nginx() {
    alive nginx && return 0
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
    await nginx 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
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
    # A running nginx keeps the mode it was started in.
    if alive nginx; then
        local running
        running=$(cat "$run_dir/nginx/identity-mode" 2>/dev/null || echo header)
        [ "$running" = "$identity_mode" ] ||
            fail "nginx runs with POD_ROUTER_IDENTITY=$running, not $identity_mode: stop it first (scripts/stack.sh down)"
    fi
    mkdir -p "$logs" "$pids"
    make_secrets
    local step
    for step in redis rabbitmq kube-sim controller nginx; do
        local started=$SECONDS
        "up_${step//-/_}"
        say "  ready  $step ($((SECONDS - started)) s)"
    done
    identity_note
}

# SIGNAL, then up to SECONDS for the process to go, then SIGKILL.
stop_process() {
    local name=$1 signal=$2 seconds=$3 pid
    pid=$(pid_of "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -"$signal" "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + seconds))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "  $name did not stop within $seconds s: killed"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pids/$name.pid"
}

down() {
    stop_process nginx QUIT 15
    stop_process controller TERM 30
    stop_process kube-sim TERM 20
    "$repo/scripts/rabbitmq-node.sh" stop "$run_dir/rabbitmq" "$amqp_port" \
        >>"$logs/rabbitmq.log" 2>&1 || true
    stop_process redis TERM 10
    say "  stopped"
}

status() {
    local down=0 name
    for name in "${components[@]}"; do
        if [ "$name" = rabbitmq ]; then
            if "$repo/scripts/rabbitmq-node.sh" ctl "$run_dir/rabbitmq" "$amqp_port" \
                status >/dev/null 2>&1; then
                say "  up    rabbitmq  amqp://127.0.0.1:$amqp_port/"
            else
                say "  DOWN  rabbitmq"
                down=1
            fi
        elif alive "$name"; then
            say "  up    $name  (pid $(pid_of "$name"))"
        else
            say "  DOWN  $name"
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
*) echo "usage: $0 up | down | status | logs [redis|rabbitmq|kube-sim|controller|nginx]" >&2; exit 2 ;;
esac
