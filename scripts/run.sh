#!/usr/bin/env bash
# make run: the whole system on this machine. For now it installs what is
# missing and builds; the local stack (Redis, RabbitMQ, kube-sim, the
# controller's run mode, nginx) is not wired up yet, and it says so.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
make build

cat >&2 <<'MSG'

pod-router: built build/ngx_http_pod_router_module.so and build/controller/pod-router-controller.
The local stack is not there yet: the controller's consume/reap loop, the
module's request path and the script that starts Redis, RabbitMQ, kube-sim,
the controller and nginx together are still to come (see README.md,
"Status"). Nothing was started. kube-sim, the local Kubernetes API, runs on
its own: scripts/kube-sim/kube-sim --state-dir .run/kube-sim (docs/kube-sim.md).
MSG
exit 1
