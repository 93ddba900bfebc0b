#!/usr/bin/env bash
# Builds the upstream control plane (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl) and node (kubelet, kube-proxy) from
# their Go modules into a cache keyed by what it is built from, once; later
# runs reuse it. Prints the binary's path.
#
# The cache is outside the work tree ($POD_ROUTER_CACHE, default
# ~/.cache/pod-router) so that a fresh clone (CI's) finds the binary a
# previous clone built, and Go's own module and build caches make a rebuild
# after a change to main.go incremental.
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

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# The key: the sources that decide what is built, and how. A new release or a change
# to main.go is a new cache entry; old entries stay until removed by hand.
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-12)
release=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")
out_dir="${POD_ROUTER_CACHE:-$HOME/.cache/pod-router}/kube-$release-$key"
binary="$out_dir/pod-router-kube"

if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi
if [ "$print_only" = 1 ]; then
    echo "$binary"
    exit 1
fi
if ! [ -x "$go" ]; then
    echo "build.sh: no Go toolchain (looked for go in PATH and $go); Go 1.24 or newer is needed" >&2
    exit 1
fi

mkdir -p "$out_dir"
started=$(date +%s)
echo "build.sh: building Kubernetes $release from its Go modules into $out_dir (a cold build, Go's caches empty, took 7 minutes on 2 cores)" >&2
# -trimpath: no build machine paths in the binary; -s -w: no symbol tables,
# a third of the size. Built to a temporary name, renamed once complete, so
# that an interrupted build is never taken for a finished one.
# The version stamps Kubernetes' own build sets (hack/lib/version.sh):
# without them every component reports v0.0.0-master, and clients judge
# version skew by it.
minor=${release#v1.}
minor=${minor%%.*}
stamps=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamps+=" -X $package.gitVersion=$release -X $package.gitMajor=1 -X $package.gitMinor=$minor"
    stamps+=" -X $package.gitTreeState=clean -X $package.buildDate=1970-01-01T00:00:00Z"
done
# Each build writes a file of its own: two builds at once (install-deps.sh
# and a test fixture, say) must not rename each other's half-written file.
partial=$(mktemp -d "$out_dir/partial.XXXXXX")
trap 'rm -rf "$partial"' EXIT
(cd "$here" && GOFLAGS=-mod=readonly "$go" build -trimpath -ldflags "-s -w$stamps" -o "$partial/pod-router-kube" .)
mv -f "$partial/pod-router-kube" "$binary"
for component in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    ln -sf pod-router-kube "$out_dir/$component"
done
echo "build.sh: built in $(($(date +%s) - started)) s: $binary" >&2
echo "$binary"
