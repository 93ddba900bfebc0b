#!/usr/bin/env bash
# The whole pod-router system on the real node (POD_ROUTER_CLUSTER=node for
# make run and scripts/stack.sh, which hands over to this script), deployed
# as a user deploys it: the control plane and a real node
# (scripts/cluster.sh up --node kubelet), the project's images built here
# (scripts/images/build.sh) and loaded into the node, then
# `kubectl apply -k` of manifests/overlays/local-node, and nothing else.
# Redis, RabbitMQ, the controller and the gateway all run as pods; the
# gateway's NodePort is relayed to 127.0.0.1. docs/node.md explains it.
#
#   scripts/node-stack.sh up        build what is missing, start, deploy; return once all is Ready
#   scripts/node-stack.sh down      stop the node, its pods and the control plane
#   scripts/node-stack.sh status    one line per component; exit 1 if one is not ready
#   scripts/node-stack.sh logs [C]  the control plane's and node's logs, or C's: redis,
#                                   rabbitmq, controller or gateway (their pods'), or a
#                                   component of scripts/cluster.sh logs (kubelet, ...)
#
# Settings, from the environment (the same names as scripts/stack.sh's):
#   POD_ROUTER_RUN_DIR        state: the cluster, a copy of manifests/ with its
#                             credentials, the relay's pid and log     (.run)
#   POD_ROUTER_PORT           the gateway on 127.0.0.1                 (8080)
#   POD_ROUTER_IDLE_TIMEOUT   seconds before an idle pod goes          (600)
#   POD_ROUTER_REAP_INTERVAL  how often the reaper looks               (10s)
#   POD_ROUTER_KUBE_PORT      kube-apiserver on 127.0.0.1              (16443)
#   POD_ROUTER_ETCD_PORT      etcd on 127.0.0.1                        (12379; +1 taken too)
#   POD_ROUTER_NODE_READY_TIMEOUT  seconds for every workload to be Ready (300)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=$(realpath -m "${POD_ROUTER_RUN_DIR:-$repo/.run}")
port=${POD_ROUTER_PORT:-8080}
idle_timeout=${POD_ROUTER_IDLE_TIMEOUT:-600}
reap_interval=${POD_ROUTER_REAP_INTERVAL:-10s}
kube_port=${POD_ROUTER_KUBE_PORT:-16443}
etcd_port=${POD_ROUTER_ETCD_PORT:-12379}
ready_timeout=${POD_ROUTER_NODE_READY_TIMEOUT:-300}

cluster_dir="$run_dir/cluster"
kubeconfig="$cluster_dir/kubeconfig"
manifests="$run_dir/manifests"
overlay="$run_dir/node-overlay"
namespace=pod-router-system
# The gateway Service's NodePort in the local-node overlay, on the node's
# address (scripts/node.sh).
gateway_node_port=30080
node_ip=10.250.0.2
workloads=(statefulset/redis statefulset/rabbitmq deployment/pod-router-controller
    deployment/pod-router-gateway)

say() { printf '%s\n' "$*"; }
fail() { printf 'node-stack.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=process-running.sh
source "$repo/scripts/process-running.sh"

kube_binary=""
kubectl() {
    [ -n "$kube_binary" ] || kube_binary=$("$repo/scripts/cluster/build.sh")
    "$kube_binary" kubectl --kubeconfig "$kubeconfig" --request-timeout 30s "$@"
}

# What the overlay runs, built here: one archive per image (the node's own,
# the sandbox and CoreDNS, are cluster.sh's).
build_images() {
    local archive
    image_archives=()
    while read -r _ _ archive; do
        image_archives+=(--image-archive "$archive")
    done < <("$repo/scripts/images/build.sh" --only demo,redis,rabbitmq,controller,gateway)
    [ ${#image_archives[@]} -gt 0 ] || fail "scripts/images/build.sh built no image"
}

# The overlay as an operator would use it: a copy of manifests/ whose
# plain-nginx overlay gets its credentials (never the repository's own
# secrets/ folders), and an overlay of ours on local-node that only sets the
# controller's idle timeout and reap interval.
write_overlay() {
    rm -rf "$manifests"
    mkdir -p "$manifests" "$overlay"
    cp -a "$repo/manifests/." "$manifests/"
    find "$manifests" -type d -name secrets -prune -exec rm -rf {} +
    "$repo/scripts/manifest-secrets.sh" "$manifests/overlays/plain-nginx" >/dev/null
    sed "s/^idle-timeout = .*/idle-timeout = \"${idle_timeout}s\"/" \
        "$manifests/base/controller/controller.toml" >"$overlay/controller.toml"
    echo "reap-interval = \"$reap_interval\"" >>"$overlay/controller.toml"
    cat >"$overlay/kustomization.yaml" <<EOF
# Written by scripts/node-stack.sh: local-node with this stack's timeouts.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../manifests/overlays/local-node
configMapGenerator:
  - name: pod-router-controller
    namespace: $namespace
    behavior: replace
    files: [controller.toml]
EOF
}

relay_pid() { cat "$run_dir/gateway-relay.pid" 2>/dev/null || true; }

start_relay() {
    running "$(relay_pid)" && return
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && fail "port $port on 127.0.0.1 is taken (POD_ROUTER_PORT)"
    setsid socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "TCP:$node_ip:$gateway_node_port" \
        </dev/null >>"$run_dir/gateway-relay.log" 2>&1 &
    echo $! >"$run_dir/gateway-relay.pid"
}

stop_relay() {
    local pid
    pid=$(relay_pid)
    if running "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$run_dir/gateway-relay.pid"
}

workloads_ready() {
    local workload
    for workload in "${workloads[@]}"; do
        kubectl -n "$namespace" rollout status "$workload" --timeout 1s >/dev/null 2>&1 || return 1
    done
}

up() {
    mkdir -p "$run_dir"
    build_images
    "$repo/scripts/cluster.sh" up --dir "$cluster_dir" --api-port "$kube_port" --etcd-port "$etcd_port" \
        --node kubelet "${image_archives[@]}"
    write_overlay
    kubectl apply -k "$overlay" >"$run_dir/apply.log" || fail "kubectl apply -k failed: $(cat "$run_dir/apply.log")"
    local deadline=$((SECONDS + ready_timeout))
    until workloads_ready; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            kubectl -n "$namespace" get pods -o wide >&2 || true
            fail "the workloads were not Ready within $ready_timeout s (kubectl --kubeconfig $kubeconfig -n $namespace describe pods)"
        fi
        sleep 2
    done
    start_relay
    say "node-stack.sh: pod-router runs on the real node; the gateway on 127.0.0.1:$port"
}

down() {
    stop_relay
    "$repo/scripts/cluster.sh" down --dir "$cluster_dir"
}

status() {
    local failed=0 workload
    "$repo/scripts/cluster.sh" status --dir "$cluster_dir" --api-port "$kube_port" || failed=1
    for workload in "${workloads[@]}"; do
        if kubectl -n "$namespace" rollout status "$workload" --timeout 1s >/dev/null 2>&1; then
            say "$workload: ready"
        else
            say "$workload: not ready"
            failed=1
        fi
    done
    if running "$(relay_pid)"; then
        say "gateway relay: 127.0.0.1:$port -> $node_ip:$gateway_node_port (pid $(relay_pid))"
    else
        say "gateway relay: not running"
        failed=1
    fi
    return "$failed"
}

logs_of() {
    if [ $# -eq 0 ]; then
        "$repo/scripts/cluster.sh" logs --dir "$cluster_dir"
        return
    fi
    case "$1" in
    redis | rabbitmq) kubectl -n "$namespace" logs "statefulset/$1" --all-containers --tail 200 ;;
    controller | gateway) kubectl -n "$namespace" logs "deployment/pod-router-$1" --all-containers --tail 200 ;;
    *) "$repo/scripts/cluster.sh" logs "$1" --dir "$cluster_dir" ;;
    esac
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
logs) shift; logs_of "$@" ;;
-h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' ;;
*) echo "usage: $0 up | down | status | logs [redis|rabbitmq|controller|gateway|COMPONENT]" >&2; exit 2 ;;
esac
