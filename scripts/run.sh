#!/usr/bin/env bash
# make run: the whole system on this machine, in the foreground. Installs
# what is missing, builds, starts the stack (scripts/stack.sh up), prints
# what to try, and on Ctrl-C or SIGTERM stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${POD_ROUTER_IDENTITY:-header}" in
header | signed) ;;
*)
    echo "run.sh: POD_ROUTER_IDENTITY=$POD_ROUTER_IDENTITY: use header (trust X-User-ID, the default) or signed (signed tokens)" >&2
    exit 2
    ;;
esac

scripts/install-deps.sh
make build

port=${POD_ROUTER_PORT:-8080}
run_dir=${POD_ROUTER_RUN_DIR:-.run}
# The Kubernetes API's state folder (scripts/stack.sh): kube-sim's, or the
# real control plane's with POD_ROUTER_CLUSTER=real or node.
kube_dir=kube-sim
[ "${POD_ROUTER_CLUSTER:-kube-sim}" = kube-sim ] || kube_dir=cluster
idle=${POD_ROUTER_IDLE_TIMEOUT:-600}
stopping=0
stop() {
    [ "$stopping" = 1 ] && return
    stopping=1
    echo
    echo "pod-router: stopping"
    scripts/stack.sh down
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "pod-router: starting the local stack in $run_dir/"
scripts/stack.sh up

if [ "${POD_ROUTER_CLUSTER:-kube-sim}" = node ]; then
    # The shipped gateway takes signed identities; its secret is the
    # overlay's (scripts/node-stack.sh).
    ask() { printf '%s' "-H \"Authorization: Bearer \$(build/controller/pod-router-controller sign --secret-file $run_dir/manifests/overlays/plain-nginx/secrets/identity-secret $1)\""; }
elif [ "${POD_ROUTER_IDENTITY:-header}" = signed ]; then
    ask() { printf '%s' "-H \"Authorization: Bearer \$(build/controller/pod-router-controller sign --secret-file $run_dir/secrets/identity-secret $1)\""; }
else
    ask() { printf '%s' "-H \"X-User-ID: $1\""; }
fi

cat <<MSG

pod-router is running: the gateway on 127.0.0.1:$port for local.gateway.com.
Idle pods are deleted after $idle s (POD_ROUTER_IDLE_TIMEOUT). Redis and
RabbitMQ ask for the passwords in $run_dir/secrets/ (docs/operations.md).

  curl $(ask demo-user-1) -H "Host: local.gateway.com" http://127.0.0.1:$port/
      the first request waits while demo-user-1's pod starts, then "It works!"
  curl $(ask demo-user-1) -H "Host: local.gateway.com" http://127.0.0.1:$port/
      again: straight to the same pod
  kubectl --kubeconfig $run_dir/$kube_dir/kubeconfig get pods -n pod-router-users
$(if [ "${POD_ROUTER_CLUSTER:-kube-sim}" = node ]; then
    echo "  kubectl --kubeconfig $run_dir/$kube_dir/kubeconfig get pods -A -o wide"
else
    echo "  curl http://127.0.0.1:${POD_ROUTER_CONTROLLER_PORT:-8081}/metrics"
fi)
  scripts/stack.sh logs controller

Logs are in $( [ "${POD_ROUTER_CLUSTER:-kube-sim}" = node ] && echo "$run_dir/cluster/ and the pods'" || echo "$run_dir/logs/"). Ctrl-C stops everything.
MSG

# In the foreground until a signal, or until a component stops answering.
# status asks each one, so a moment's miss (the controller's /readyz while it
# reconnects to Redis) is not taken for a death: three in a row are.
misses=0
while sleep 2; do
    if scripts/stack.sh status >/dev/null; then
        misses=0
        continue
    fi
    misses=$((misses + 1))
    if [ "$misses" -ge 3 ]; then
        echo "pod-router: a component stopped answering:" >&2
        scripts/stack.sh status >&2 || true
        exit 1
    fi
done
