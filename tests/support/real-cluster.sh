#!/usr/bin/env bash
# Starts or stops a private real control plane (scripts/cluster.sh, with its
# node agent) for one test run, as kube-sim.sh does kube-sim: a CTest
# fixture of the C++ integration tests' real tier. Free ports, state in DIR;
# once started, DIR/kubeconfig.token is a service account's token
# kubeconfig with cluster-admin (the tests swap its token for a bad one,
# which a client certificate would outrank).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1 dir=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
account=pod-router-test/integration-admin

case "$action" in
start)
    "$0" stop "$dir"
    mkdir -p "$dir"
    # A free API port, and a free etcd port whose next one (its peers') is
    # free too, as the Python tiers choose them.
    read -r api_port etcd_port < <(/usr/bin/python3 -c "
import sys; sys.path.insert(0, '$repo/tests/support')
from servers import free_port, free_port_pair
print(free_port(), free_port_pair())")
    # kube-sim.sh's blocks are 127.20.0.0 to 127.219.240.0; these, the
    # 560 /20 blocks from 127.220.0.0 to 127.254.240.0, never overlap them.
    block=$((RANDOM % 560))
    args=(--dir "$dir" --api-port "$api_port" --etcd-port "$etcd_port"
        --pod-cidr "127.$((220 + block / 16)).$(((block % 16) * 16)).0/20" --start-delay 0.2)
    printf '%s\n' "${args[@]}" >"$dir/cluster-args"
    "$repo/scripts/cluster.sh" up "${args[@]}" --reset
    kubectl="$(dirname "$("$repo/scripts/cluster/build.sh" --print-path)")/kubectl"
    run_kubectl() { "$kubectl" --kubeconfig "$dir/kubeconfig" "$@" >/dev/null; }
    run_kubectl create namespace "${account%/*}"
    run_kubectl create serviceaccount "${account#*/}" -n "${account%/*}"
    run_kubectl create clusterrolebinding pod-router-test-integration-admin \
        --clusterrole cluster-admin --serviceaccount "${account%/*}:${account#*/}"
    "$repo/scripts/cluster.sh" token "$account" --duration 1h "${args[@]}"
    ln -sf "kubeconfig.${account%/*}.${account#*/}" "$dir/kubeconfig.token"
    ;;
stop)
    [ -f "$dir/cluster-args" ] || exit 0
    mapfile -t args <"$dir/cluster-args"
    "$repo/scripts/cluster.sh" down "${args[@]}"
    rm -f "$dir/cluster-args"
    ;;
*) usage ;;
esac
