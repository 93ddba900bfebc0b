# shellcheck shell=bash
# Sourced by scripts/cluster/build.sh and scripts/coredns/build.sh: the one
# rule for building an upstream tool from a Go module of ours into a cache
# keyed by what it is built from.
#
# The cache is outside the work tree ($POD_ROUTER_CACHE, default
# ~/.cache/pod-router) so that a fresh clone (CI's) finds what a previous
# clone built, and Go's own module and build caches make a rebuild after a
# change to main.go incremental. The key is the module's go.mod, go.sum,
# main.go and build.sh: a new release or a change to main.go is a new cache
# entry; old entries stay until removed by hand.
#
# cached_go_build MODULE-DIR CACHE-NAME BINARY PRINT-ONLY MESSAGE [GO-BUILD-FLAGS...]
#   prints the path of MODULE-DIR's binary BINARY in the cache entry
#   CACHE-NAME-KEY, building it first unless it is there; with PRINT-ONLY
#   1, only prints the path, and returns 1 if it is not built. MESSAGE is
#   what the build says it does (it is told how long a cold build took).
cached_go_build() {
    local module=$1 cache_name=$2 name=$3 print_only=$4 message=$5
    shift 5
    local go key out_dir binary partial started
    go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
    key=$(cat "$module/go.mod" "$module/go.sum" "$module/main.go" "$module/build.sh" |
        sha256sum | cut -c1-12)
    out_dir="${POD_ROUTER_CACHE:-$HOME/.cache/pod-router}/$cache_name-$key"
    binary="$out_dir/$name"
    if [ -x "$binary" ]; then
        echo "$binary"
        return 0
    fi
    if [ "$print_only" = 1 ]; then
        echo "$binary"
        return 1
    fi
    if ! [ -x "$go" ]; then
        echo "build.sh: no Go toolchain (looked for go in PATH and $go); Go 1.24 or newer is needed" >&2
        return 1
    fi
    mkdir -p "$out_dir"
    started=$(date +%s)
    echo "build.sh: $message into $out_dir" >&2
    # -trimpath and -buildvcs=false: the binary depends on the keyed
    # sources only, not on the build machine's paths or the work tree's git
    # state. Each build writes a file of its own, renamed once complete, so
    # that an interrupted build is never taken for a finished one and two
    # builds at once (install-deps.sh and a test fixture, say) never rename
    # each other's half-written file.
    partial=$(mktemp -d "$out_dir/partial.XXXXXX")
    # shellcheck disable=SC2064  # the folder is this call's, fixed now
    trap "rm -rf '$partial'" EXIT
    (cd "$module" && GOFLAGS="-mod=readonly -buildvcs=false" "$go" build -trimpath "$@" -o "$partial/$name" .)
    mv -f "$partial/$name" "$binary"
    rm -rf "$partial"
    echo "build.sh: built in $(($(date +%s) - started)) s: $binary" >&2
    echo "$binary"
}
