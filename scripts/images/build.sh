#!/usr/bin/env bash
# Builds the images a local Kubernetes node runs pod-router with, with no
# registry: a Debian base from debootstrap, and every other image from it
# (or from scratch) with podman. Each image is written as a docker-archive
# tarball that containerd imports (ctr images import), into a cache keyed by
# what the image is built from, so that a run with nothing changed only
# hashes files.
#
# The cache is outside the work tree ($POD_ROUTER_CACHE, as for
# scripts/cluster/build.sh), so that a fresh clone finds what an earlier one
# built. Old entries stay until removed by hand.
set -euo pipefail
# Failures inside $(...) too: the keys are computed there.
shopt -s inherit_errexit

usage() {
    cat <<'EOF'
Usage: scripts/images/build.sh [--cache DIR] [--only NAME[,NAME...]] [--list]
                               [--import --containerd-address SOCKET]

Builds, with no registry, the images pod-router's local node runs, unless
the cache already holds the build of exactly their sources, and prints one
line per image on stdout:

  NAME IMAGE-REF ARCHIVE-PATH

The archive is a docker-archive tarball that `ctr images import` reads.
Progress, with timings, goes to stderr; each build's full output goes to a
log file in the cache, whose last lines are shown if the build fails.

Images (NAME, and its reference):
  debian      localhost/pod-router/debian:bookworm           debootstrap minbase
  pause       localhost/pod-router/pause:1.0                 the pod sandbox
  coredns     localhost/pod-router/coredns:VERSION           the cluster DNS (scripts/coredns)
  demo        localhost/pod-router/demo:VERSION              the user pod
  redis       localhost/pod-router/redis:7.0-bookworm        Debian's Redis
  rabbitmq    localhost/pod-router/rabbitmq:3.10-bookworm    Debian's RabbitMQ
  controller  localhost/pod-router/pod-router-controller:VERSION
  gateway     localhost/pod-router/pod-router-nginx:VERSION
VERSION is the project's, from CMakeLists.txt.

  --cache DIR      where the archives and logs go (default:
                   ${POD_ROUTER_CACHE:-~/.cache/pod-router}/images)
  --only NAMES     only these images (repeatable, or comma-separated); the
                   base is still built or loaded when one needs it
  --list           print the lines without building anything (the archive
                   may not exist yet)
  --import         also import every archive into containerd's k8s.io
                   namespace, unless the image is there already
  --containerd-address SOCKET
                   the containerd to import into (required with --import)
  -h, --help       this help

The base's key includes the Date: of the host's apt lists for bookworm:
after a Debian point release, `apt-get update` makes the next run rebuild.
Needs root (debootstrap; podman's root storage), podman,
debootstrap and gcc (scripts/install-deps.sh installs them), and network
access to deb.debian.org.
EOF
}

prog=images/build.sh

die() {
    echo "$prog: $*" >&2
    exit 1
}

log() {
    echo "$prog: $*" >&2
}

usage_error() {
    echo "$prog: $*" >&2
    usage >&2
    exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
self="$here/$(basename "$0")"

cache_dir="${POD_ROUTER_CACHE:-$HOME/.cache/pod-router}/images"
only=() list_only=false import=false containerd_address=""
while [ $# -gt 0 ]; do
    case "$1" in
    --cache)
        [ $# -ge 2 ] || usage_error "--cache needs a directory"
        cache_dir=$2
        shift ;;
    --only)
        [ $# -ge 2 ] || usage_error "--only needs image names"
        IFS=, read -ra names <<<"$2"
        only+=("${names[@]}")
        shift ;;
    --list) list_only=true ;;
    --import) import=true ;;
    --containerd-address)
        [ $# -ge 2 ] || usage_error "--containerd-address needs a socket path"
        containerd_address=$2
        shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
    esac
    shift
done
if $import && [ -z "$containerd_address" ]; then
    usage_error "--import needs --containerd-address SOCKET"
fi
if ! $import && [ -n "$containerd_address" ]; then
    usage_error "--containerd-address is only for --import"
fi

version=$(sed -n 's/^project(pod_router VERSION \([0-9][0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
[ -n "$version" ] || die "no project(pod_router VERSION x.y.z) in $repo/CMakeLists.txt"

# The images, in build order: the base comes first, since the others but
# pause are built FROM it. For each: its reference, the Containerfile or
# Dockerfile, the build context, and the Dockerfile stage to build.
all_names=(debian pause coredns demo redis rabbitmq controller gateway)
declare -A ref file context target
base_ref=localhost/pod-router/debian:bookworm
ref[debian]=$base_ref
ref[pause]=localhost/pod-router/pause:$(sed -n 's/^#define POD_ROUTER_PAUSE_VERSION *"\(.*\)"$/\1/p' "$here/pause/pause.c")
ref[coredns]=localhost/pod-router/coredns:$(sed -n 's/^require github.com\/coredns\/coredns v\([0-9.]*\)$/\1/p' "$repo/scripts/coredns/go.mod")
ref[demo]=localhost/pod-router/demo:$version
ref[redis]=localhost/pod-router/redis:7.0-bookworm
ref[rabbitmq]=localhost/pod-router/rabbitmq:3.10-bookworm
ref[controller]=localhost/pod-router/pod-router-controller:$version
ref[gateway]=localhost/pod-router/pod-router-nginx:$version
for name in "${all_names[@]}"; do
    [[ ${ref[$name]} != *: ]] || die "no version for the $name image's tag"
done
file[pause]=$here/pause/Containerfile
file[coredns]=$here/coredns/Containerfile
file[demo]=$here/demo/Containerfile
file[redis]=$here/redis/Containerfile
file[rabbitmq]=$here/rabbitmq/Containerfile
file[controller]=$repo/controller/Dockerfile
file[gateway]=$repo/ngx_pod_router_module/Dockerfile
context[demo]=$repo # it copies scripts/kube-sim/kubesim/demo_pod.py
context[redis]=$here/redis
context[rabbitmq]=$here/rabbitmq
context[controller]=$repo
context[gateway]=$repo
# pause's and coredns's contexts are temporary folders with the binary
# (build_pause, build_coredns).
target[controller]=controller
target[gateway]=gateway-nginx

selected=()
if [ ${#only[@]} -eq 0 ]; then
    selected=("${all_names[@]}")
else
    for name in "${only[@]}"; do
        [ -n "${ref[$name]:-}" ] || usage_error "no image named '$name' (images: ${all_names[*]})"
    done
    for name in "${all_names[@]}"; do
        for wanted in "${only[@]}"; do
            if [ "$name" = "$wanted" ]; then
                selected+=("$name")
                break
            fi
        done
    done
fi

# --- content keys ------------------------------------------------------------

# The files a Containerfile takes from its build context: the sources of
# COPY and ADD (but not --from another stage) and of bind mounts. Read from
# the file, so that a COPY added to a Dockerfile is in the key without a
# change here.
context_sources() {
    sed -e ':a' -e '/\\$/N' -e 's/\\\n/ /' -e 'ta' "$1" | awk '
        /^[[:space:]]*#/ { next }
        (toupper($1) == "COPY" || toupper($1) == "ADD") && $0 !~ /--from=/ {
            n = 0
            for (i = 2; i <= NF; i++)
                if ($i !~ /^--/)
                    arg[++n] = $i
            for (i = 1; i < n; i++)
                print arg[i]
        }
        {
            for (i = 1; i <= NF; i++)
                if ($i ~ /^--mount=/ && $i ~ /type=bind/ && match($i, /source=[^,]*/))
                    print substr($i, RSTART + 7, RLENGTH - 7)
        }'
}

has_bind_mounts() {
    grep -q -- '--mount=type=bind' "$1"
}

# "SHA256  PATH" for every file the sources name, PATH relative to the
# context. A directory's files leave out what the context's .dockerignore
# drops everywhere ("**/NAME" lines: objects, libraries, __pycache__), which
# the build would not copy either.
hash_sources() {
    local dir=$1 source line
    shift
    local prune=(-name .git)
    if [ -f "$dir/.dockerignore" ]; then
        while read -r line; do
            case "$line" in
            '**/'*) prune+=(-o -name "${line#\*\*/}") ;;
            esac
        done <"$dir/.dockerignore"
    fi
    for source in "$@"; do
        source=${source#./}
        [ -e "$dir/$source" ] || die "$dir/$source, which a Containerfile copies, does not exist"
        (cd "$dir" && find "$source" \( "${prune[@]}" \) -prune -o -type f -print0)
    done | LC_ALL=C sort -zu | (cd "$dir" && xargs -0 -r sha256sum)
}

short_hash() {
    sha256sum | cut -c1-12
}

self_hash=$(sha256sum <"$self" | cut -d' ' -f1)
base_key() {
    local lists dated=""
    shopt -s nullglob
    lists=(/var/lib/apt/lists/*_dists_bookworm_InRelease)
    shopt -u nullglob
    if [ ${#lists[@]} -ne 0 ]; then
        dated=$(grep -m1 '^Date:' "${lists[0]}" || true)
    fi
    if [ -z "$dated" ]; then
        log "warning: no Date: in the host's apt lists for bookworm (apt-get update); the base's key cannot see Debian's updates"
    fi
    {
        echo "script $self_hash"
        echo "debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo none)"
        echo "arch $(dpkg --print-architecture)"
        echo "$dated"
    } | short_hash
}

declare -A key
key[debian]=$(base_key)
image_key() {
    local name=$1 sources
    {
        echo "script $self_hash"
        echo "ref ${ref[$name]} target ${target[$name]:-}"
        if [ "$name" = pause ]; then
            # Built on the host: its source and the compiler and C library
            # it is linked with, statically.
            sha256sum <"${file[pause]}"
            sha256sum <"$here/pause/pause.c"
            gcc --version 2>/dev/null | head -n 1 || echo "no gcc" # said below
            dpkg-query -W -f='libc6-dev ${Version}\n' libc6-dev 2>/dev/null || echo "no libc6-dev"
        elif [ "$name" = coredns ]; then
            # The binary's own cache key names its sources (scripts/coredns).
            sha256sum <"${file[coredns]}"
            "$repo/scripts/coredns/build.sh" --print-path || true  # the path holds its key
        else
            echo "build-arg DEBIAN_IMAGE=$base_ref base ${key[debian]}"
            sha256sum <"${file[$name]}"
            mapfile -t sources < <(context_sources "${file[$name]}")
            [ -f "${context[$name]}/.dockerignore" ] && sha256sum <"${context[$name]}/.dockerignore"
            if [ ${#sources[@]} -ne 0 ]; then
                hash_sources "${context[$name]}" "${sources[@]}"
            fi
        fi
    } | short_hash
}
for name in "${all_names[@]}"; do
    [ "$name" = debian ] || key[$name]=$(image_key "$name")
done

archive_of() {
    echo "$cache_dir/$1-${key[$1]}.tar"
}

if $list_only; then
    for name in "${selected[@]}"; do
        echo "$name ${ref[$name]} $(archive_of "$name")"
    done
    exit 0
fi

# --- building ------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "needs root: debootstrap, and podman's root storage, which the archives are written from"
for command in podman debootstrap gcc chroot flock; do
    command -v "$command" >/dev/null 2>&1 ||
        die "$command not found; scripts/install-deps.sh installs what the node needs"
done
if $import; then
    command -v ctr >/dev/null 2>&1 || die "ctr not found (Debian's containerd package)"
    [ -S "$containerd_address" ] || die "no containerd socket at $containerd_address"
fi

# No systemd on the machines this runs on: cgroups through cgroupfs, events
# to a file instead of the journal. Builds use the host's network, since
# podman's own (netavark) would need iptables rules on the host.
podman=(podman --cgroup-manager=cgroupfs --events-backend=file)

mkdir -p "$cache_dir/logs" "$cache_dir/debs"
# Two runs at once (the node script and a test, say) would both bootstrap
# and build the same images; the second waits and then finds them cached.
exec 9>"$cache_dir/.lock"
if ! flock -n 9; then
    log "waiting for another build using $cache_dir"
    flock 9
fi

# What the EXIT trap undoes: debootstrap's mounts in a half-built root, and
# temporary folders and files.
cleanup_paths=()
cleanup() {
    local path mount
    for path in "${cleanup_paths[@]}"; do
        # Deepest first (reverse order puts /a/b/c before /a/b).
        while read -r mount; do
            umount "$mount" 2>/dev/null || umount -l "$mount" || true
        done < <(awk -v d="$path" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
        # --one-file-system: should an unmount have failed, never delete
        # through it into the host's /dev or /proc.
        rm -rf --one-file-system "$path"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a step with its output in the image's log; on failure, shows the
# log's end and stops.
run_logged() {
    local logfile=$1
    shift
    if ! "$@" >>"$logfile" 2>&1; then
        tail -n 40 "$logfile" >&2
        die "failed: $* (whole log: $logfile)"
    fi
}

cache_key_of_image() {
    "${podman[@]}" image inspect --format '{{index .Labels "pod-router.cache-key"}}' "$1" 2>/dev/null || true
}

image_id() {
    "${podman[@]}" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true
}

# Images a rebuild left without a name, removed at the end (dependents
# first, so that an old base is no longer in use).
replaced_ids=()
remove_replaced() {
    local i id
    for ((i = ${#replaced_ids[@]} - 1; i >= 0; i--)); do
        id=${replaced_ids[$i]}
        if [ "$("${podman[@]}" image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
            "${podman[@]}" rmi "$id" >/dev/null 2>&1 || true
        fi
    done
}

build_debian() {
    local logfile=$1 work rootfs arch
    work=$(mktemp -d "$cache_dir/debian-rootfs.XXXXXX")
    cleanup_paths+=("$work")
    rootfs=$work/rootfs
    arch=$(dpkg --print-architecture)
    # minbase: Priority required plus apt, which already has bash, passwd
    # (groupadd, useradd) and the archive keyring; the .deb cache makes a
    # rebuild download only what changed.
    run_logged "$logfile" debootstrap --variant=minbase --arch="$arch" --components=main \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --cache-dir="$(cd "$cache_dir/debs" && pwd)" \
        bookworm "$rootfs" http://deb.debian.org/debian

    # What Debian's own -slim image has, so that the published Dockerfiles
    # find the same base: the release's updates and security suites...
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # ... no service started by a package's postinst (redis-server's and
    # rabbitmq-server's would try) ...
    printf '#!/bin/sh\n# A container image: packages must not start services.\nexit 101\n' \
        >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    # ... no downloaded .debs or translations left in an image's layers ...
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    # ... and no documentation, manual pages or translations of messages
    # (the -slim rules), for what is installed later and what is there now.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{info,linda,locale,man}/* "$rootfs"/usr/share/lintian/overrides/*

    run_logged "$logfile" chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs/var/cache/ldconfig/aux-cache"
    find "$rootfs/var/log" -type f -delete
    # debootstrap copies the host's; the runtime supplies its own.
    rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
    [ ! -e "$rootfs/etc/machine-id" ] || : >"$rootfs/etc/machine-id"

    # Every mount debootstrap made must be gone before the root is packed.
    if awk -v d="$rootfs" 'index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        die "debootstrap left mounts under $rootfs"
    fi
    # Numeric owners: the root's, not the host's names for them.
    if ! tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -c . 2>>"$logfile" |
        "${podman[@]}" import --quiet \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --change "LABEL pod-router.cache-key=${key[debian]}" \
            - "$base_ref" >>"$logfile" 2>&1; then
        tail -n 40 "$logfile" >&2
        die "podman import of the Debian root failed (whole log: $logfile)"
    fi
}

build_from_file() {
    local name=$1 logfile=$2 dir=$3
    local args=(--pull=never --network=host --label "pod-router.cache-key=${key[$name]}"
        --build-arg "DEBIAN_IMAGE=$base_ref" -f "${file[$name]}" -t "${ref[$name]}")
    [ -z "${target[$name]:-}" ] || args+=(--target "${target[$name]}")
    # buildah 1.28 reuses a cached RUN --mount=type=bind step when the
    # mounted file has changed (buildah #5400, fixed in 1.38): such an image
    # is built without the layer cache, and leaves no layers that a later
    # build could wrongly reuse. COPY steps are keyed by content and safe.
    if has_bind_mounts "${file[$name]}"; then
        args+=(--no-cache --layers=false)
    fi
    run_logged "$logfile" "${podman[@]}" build "${args[@]}" "$dir"
}

build_pause() {
    local logfile=$1 work
    work=$(mktemp -d "$cache_dir/pause-context.XXXXXX")
    cleanup_paths+=("$work")
    run_logged "$logfile" gcc -Os -static -s -Wall -Wextra -Werror -o "$work/pause" "$here/pause/pause.c"
    build_from_file pause "$logfile" "$work"
}

build_coredns() {
    local logfile=$1 work binary
    work=$(mktemp -d "$cache_dir/coredns-context.XXXXXX")
    cleanup_paths+=("$work")
    binary=$("$repo/scripts/coredns/build.sh" 2>>"$logfile") ||
        die "coredns: scripts/coredns/build.sh failed (log: $logfile)"
    cp "$binary" "$work/coredns"
    build_from_file coredns "$logfile" "$work"
}

# Makes the podman image NAME the build of its current key: loaded from its
# archive, or built.
ensure_in_podman() {
    local name=$1 archive logfile started old_id
    archive=$(archive_of "$name")
    [ "$(cache_key_of_image "${ref[$name]}")" != "${key[$name]}" ] || return 0
    old_id=$(image_id "${ref[$name]}")
    if [ -f "$archive" ]; then
        "${podman[@]}" load --quiet -i "$archive" >/dev/null || die "$name: podman load -i $archive failed"
        [ -z "$old_id" ] || replaced_ids+=("$old_id")
        log "$name: loaded into podman from $(basename "$archive")"
        return 0
    fi
    [ "$name" = debian ] || [ "$name" = pause ] || [ "$name" = coredns ] || ensure_in_podman debian
    logfile="$cache_dir/logs/$name-${key[$name]}.log"
    : >"$logfile"
    started=$SECONDS
    log "$name: building ${ref[$name]} (log: $logfile)"
    case "$name" in
    debian) build_debian "$logfile" ;;
    pause) build_pause "$logfile" ;;
    coredns) build_coredns "$logfile" ;;
    *) build_from_file "$name" "$logfile" "${context[$name]}" ;;
    esac
    [ "$(cache_key_of_image "${ref[$name]}")" = "${key[$name]}" ] ||
        die "$name: the built image does not carry its key (log: $logfile)"
    [ -z "$old_id" ] || replaced_ids+=("$old_id")
    log "$name: built in $((SECONDS - started)) s"
}

# The archive for NAME's key: there already, or saved from podman.
ensure_archive() {
    local name=$1 archive partial started
    archive=$(archive_of "$name")
    if [ -f "$archive" ]; then
        log "$name: cached ($(basename "$archive"))"
        return 0
    fi
    ensure_in_podman "$name"
    started=$SECONDS
    partial=$(mktemp "$cache_dir/.$name.tar.XXXXXX")
    cleanup_paths+=("$partial")
    # docker-archive, with the reference in its RepoTags: ctr names the
    # image from it (an OCI archive would need --base-name).
    rm -f "$partial"
    "${podman[@]}" save --quiet --format docker-archive -o "$partial" "${ref[$name]}" ||
        die "$name: podman save ${ref[$name]} failed"
    # Renamed once complete: an archive that exists is whole.
    mv -f "$partial" "$archive"
    log "$name: saved in $((SECONDS - started)) s, $(du -m "$archive" | cut -f1) MB: $archive"
}

# --- containerd --------------------------------------------------------------

ctr_k8s() {
    ctr --address "$containerd_address" --namespace k8s.io "$@"
}

# The image's config digest, which is podman's image ID: the same in the
# archive and in containerd means the same image.
archive_config_digest() {
    tar -xOf "$1" manifest.json | sed -n 's/.*"Config":"\(sha256:\)\{0,1\}\([0-9a-f]\{64\}\)[^"]*".*/sha256:\2/p'
}

containerd_config_digest() {
    local digest
    digest=$(ctr_k8s images ls "name==$1" | awk 'NR == 2 { print $3 }')
    [ -n "$digest" ] || return 0
    ctr_k8s content get "$digest" 2>/dev/null |
        sed -n 's/.*"config":{[^}]*"digest":"\(sha256:[0-9a-f]\{64\}\)".*/\1/p'
}

import_archive() {
    local name=$1 archive wanted started
    archive=$(archive_of "$name")
    wanted=$(archive_config_digest "$archive")
    if [ -n "$wanted" ] && [ "$(containerd_config_digest "${ref[$name]}")" = "$wanted" ]; then
        log "$name: already in containerd"
        return 0
    fi
    started=$SECONDS
    ctr_k8s images import --all-platforms "$archive" >/dev/null ||
        die "$name: ctr images import $archive failed"
    ctr_k8s images ls -q "name==${ref[$name]}" | grep -qxF "${ref[$name]}" ||
        die "$name: imported $archive, but containerd has no ${ref[$name]}"
    log "$name: imported into containerd (k8s.io) in $((SECONDS - started)) s"
}

# --- main ----------------------------------------------------------------------

started_all=$SECONDS
for name in "${selected[@]}"; do
    ensure_archive "$name"
done
remove_replaced
if $import; then
    for name in "${selected[@]}"; do
        import_archive "$name"
    done
fi
for name in "${selected[@]}"; do
    echo "$name ${ref[$name]} $(archive_of "$name")"
done
log "done in $((SECONDS - started_all)) s"
