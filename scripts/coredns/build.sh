#!/usr/bin/env bash
# Builds CoreDNS, with only the plugins the node's cluster DNS needs
# (main.go), from its Go module into a cache keyed by what it is built from,
# once; later runs reuse it. Prints the binary's path.
# The cache: scripts/cached-go-build.sh, as scripts/cluster/build.sh.
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: scripts/coredns/build.sh [--print-path]

Builds coredns (CoreDNS with the kubernetes, cache, errors, health, ready,
prometheus, loadbalance, log, reload and bind plugins, and no forward), a static
binary, from the Go modules named in scripts/coredns/go.mod, unless the cache
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
release=$(sed -n 's/^require github.com\/coredns\/coredns \(v[0-9.]*\)$/\1/p' "$here/go.mod")
# CGO_ENABLED=0: a static binary, for an image FROM scratch (no libc, no
# resolver library). -s -w: no symbol tables, a third of the size.
CGO_ENABLED=0 cached_go_build "$here" "coredns-$release" coredns "$print_only" \
    "building CoreDNS $release from its Go module (a cold build, Go's build cache empty, took 2 to 3 minutes on 2 cores)" \
    -ldflags "-s -w"
