#!/usr/bin/env bash
# Builds the upstream control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl) and node (kubelet, kube-proxy) from
# their Go modules into a cache keyed by what it is built from, once; later
# runs reuse it. Prints the binary's path.
# The cache: scripts/cached-go-build.sh.
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: scripts/cluster/build.sh [--print-path]

Builds pod-router-kube (etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, kubectl, kubelet and kube-proxy at Kubernetes
v1.34.4, etcd v3.6.4)
from the Go modules named in scripts/cluster/go.mod, unless the cache
already holds the build of exactly these sources. Prints the binary's path.

  --print-path   print where the binary is (or would be) and exit; exit 1
                 if it is not built yet

Environment: POD_ROUTER_CACHE (default ~/.cache/pod-router), GO (default
go from PATH, then /usr/local/go/bin/go).
EOF2
}

here=$(cd "$(dirname "$0")" && pwd)
print_only=0
case "${1:-}" in
"") ;;
--print-path) print_only=1 ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

# shellcheck source=../cached-go-build.sh
. "$here/../cached-go-build.sh"
release=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")
# The version stamps Kubernetes' own build sets (hack/lib/version.sh):
# without them every component reports v0.0.0-master, and clients judge
# version skew by it. -s -w: no symbol tables, a third of the size.
minor=${release#v1.}
minor=${minor%%.*}
stamps=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamps+=" -X $package.gitVersion=$release -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    stamps+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done
binary=$(cached_go_build "$here" "kube-$release" pod-router-kube "$print_only" \
    "building Kubernetes $release from its Go modules (a cold build, Go's caches empty, took 7 minutes on 2 cores)" \
    -ldflags "-s -w$stamps") || {
    echo "$binary"  # --print-path: where it would be
    exit 1
}
# The components' names, for a process list that says which is which.
for component in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    ln -sf pod-router-kube "$(dirname "$binary")/$component"
done
echo "$binary"
