#!/usr/bin/env bash
# Installs the Debian 12 packages that pod-router's build, local stack and
# tests need. Idempotent: does nothing when everything is present. As root it
# installs what is missing; otherwise it prints the exact command to run.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install-deps.sh [--bench] [--check] [--list] [IMAGE GROUP...]

Installs what is missing of the packages pod-router needs (Debian 12),
then builds the Kubernetes control plane the tests run against from its Go
modules, once (scripts/cluster/build.sh; needs Go 1.24 or newer).

  --bench   also what make bench needs: wrk, the OpenResty-style and the
            seed's gateways it compares against, gnuplot for its chart
  --check   only report what is missing; exit 1 if anything is
  --list    print every package, one per line, and exit

Image groups, for the Dockerfiles: only these packages, instead of the
machine's whole set.

  --module-build        build the nginx module against Debian's nginx
  --gateway-runtime     Debian's nginx and what the module loads
  --controller-build    build pod-router-controller
  --controller-runtime  what pod-router-controller loads
EOF
}

# One group per need, so that a missing package says why it is wanted. The
# images install single groups (the options below), so that the machine and
# the images name each package once.
toolchain_packages=(g++ make cmake pkg-config)
core_dev_packages=(
    libjansson-dev libssl-dev       # the shared core: JSON, digests
    libhiredis-dev librabbitmq-dev  # the module and controller: Redis, RabbitMQ
)
module_dev_packages=(
    nginx nginx-dev                 # the packaged nginx, and its source tree + flags for modules
)
controller_dev_packages=(
    libcurl4-openssl-dev            # the controller: Kubernetes API
    libyaml-cpp-dev                 # the controller: kubeconfig and pod templates
    libcli11-dev                    # the controller: command line
    libcpp-httplib-dev              # the controller: /healthz, /readyz, /metrics
)
build_packages=("${toolchain_packages[@]}" "${core_dev_packages[@]}" "${module_dev_packages[@]}"
    "${controller_dev_packages[@]}")
# What the built binaries load, for the images' final stages; tests/images
# checks these lists against the libraries the binaries need.
core_runtime_packages=(
    libjansson4 libssl3 libhiredis0.14 librabbitmq4 libstdc++6
)
controller_runtime_packages=(
    "${core_runtime_packages[@]}"
    libcurl4 libyaml-cpp0.7 libcpp-httplib0.11
    ca-certificates                 # libcurl's CA bundle, for API servers with public certificates
)
gateway_runtime_packages=(
    nginx "${core_runtime_packages[@]}"
)
stack_packages=(
    redis-server rabbitmq-server
    python3 openssl                 # kube-sim, the local Kubernetes API (and its certificates)
    curl                            # make run: readiness checks, and the demo's requests
)
test_packages=(
    libcmocka-dev
    python3-pytest python3-kubernetes python3-redis python3-pika
    python3-yaml                    # tests/images reads the CI workflow
    valgrind                        # the gateway tests again under memcheck
)
tool_packages=(
    clang-14 libclang-rt-14-dev     # make fuzz (libFuzzer, sanitizers)
    clang-format clang-tidy cppcheck # make format, make lint
    python3-pyflakes                # make test's style tier for the Python code
    yamllint shellcheck             # ... and for the manifests, the workflow and the scripts
)
# Only for make bench: what users would run instead of this module.
bench_packages=(
    wrk                             # the load generator
    libnginx-mod-http-lua lua-nginx-redis # OpenResty-style lookup (pulls nginx-extras' modules)
    python3-fastapi python3-uvicorn python3-httpx # the seed's gateway, as its README builds it
    python3-uvloop python3-httptools # uvicorn's fast loop and parser ("uvicorn[standard]")
    gnuplot-nox                     # the chart
    linux-perf                      # the profile shown when a target is missed
)
# The real node's (docs/node.md; scripts/node-check.sh, which the tests run,
# says what the machine lacks): Debian's runtime, network plugins, iptables.
node_packages=(
    containerd runc                 # the container runtime the kubelet talks CRI to
    containernetworking-plugins     # bridge, host-local, loopback, portmap (/usr/lib/cni)
    iptables                        # kube-proxy's and the plugins' rules
    socat                           # relays between the host and the node's namespace
    podman debootstrap              # the node's images, built with no registry (scripts/images/build.sh)
)
packages=("${build_packages[@]}" "${stack_packages[@]}" "${test_packages[@]}" "${tool_packages[@]}"
    "${node_packages[@]}")

check_only=false list_only=false bench=false image_packages=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) bench=true ;;
    --check) check_only=true ;;
    --list) list_only=true ;;
    --module-build)
        image_packages+=("${toolchain_packages[@]}" "${core_dev_packages[@]}" "${module_dev_packages[@]}") ;;
    --gateway-runtime) image_packages+=("${gateway_runtime_packages[@]}") ;;
    --controller-build)
        image_packages+=("${toolchain_packages[@]}" "${core_dev_packages[@]}" "${controller_dev_packages[@]}") ;;
    --controller-runtime) image_packages+=("${controller_runtime_packages[@]}") ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-deps.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ ${#image_packages[@]} -ne 0 ]; then
    packages=("${image_packages[@]}")
fi
if $bench; then
    packages+=("${bench_packages[@]}")
fi
if $list_only; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps.sh: this script needs a Debian-based system (dpkg-query not found)" >&2
    exit 1
fi

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$package")
done

# kubectl is not in Debian 12's archive at a usable version; the machine
# image brings it. make run applies manifests/ with it and the tests drive
# it, so say so early.
if [ ${#image_packages[@]} -eq 0 ] && ! command -v kubectl >/dev/null 2>&1; then
    echo "install-deps.sh: warning: kubectl is not on the PATH; make run and the tests need kubectl 1.32" >&2
fi

# The real control plane and node (etcd, kube-apiserver, kube-scheduler,
# kube-controller-manager, kubectl, kubelet, kube-proxy) and CoreDNS are not
# packaged: they are built from their Go modules once, into a cache outside
# the work tree (scripts/cluster/build.sh, about 7 minutes cold on 2 cores;
# scripts/coredns/build.sh, 2 to 3), and the real node's images with
# podman (scripts/images/build.sh, about 5 minutes cold; as root only).
# Nothing when cached. Not for the images.
control_plane() {
    [ ${#image_packages[@]} -eq 0 ] || return 0
    local here
    here=$(dirname "$0")
    if $check_only; then
        "$here/cluster/build.sh" --print-path >/dev/null || {
            echo "install-deps.sh: the control plane is not built (scripts/cluster/build.sh)"
            return 1
        }
        "$here/coredns/build.sh" --print-path >/dev/null || {
            echo "install-deps.sh: CoreDNS is not built (scripts/coredns/build.sh)"
            return 1
        }
        return 0
    fi
    "$here/cluster/build.sh" >/dev/null
    "$here/coredns/build.sh" >/dev/null
    if [ "$(id -u)" -eq 0 ]; then
        "$here/images/build.sh" >/dev/null
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps.sh: all ${#packages[@]} packages are installed"
    control_plane
    exit 0
fi

echo "install-deps.sh: missing ${#missing[@]} of ${#packages[@]} packages: ${missing[*]}"
if $check_only; then
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: not root; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

# Debian starts a service when its package is installed. pod-router starts
# its own Redis, RabbitMQ, nginx (and, for a node, containerd) on its own
# ports and folders, so keep the system-wide ones from starting (and from
# holding ports 80, 5672, 6379), unless the machine already has a policy of
# its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# Retries and a timeout: a slow mirror must not hang CI for its whole budget.
apt_options=(-o Acquire::Retries=3 -o Acquire::http::Timeout=60 -o DPkg::Lock::Timeout=120)
apt-get "${apt_options[@]}" update -q
apt-get "${apt_options[@]}" install -y -q --no-install-recommends "${missing[@]}"

still_missing=()
for package in "${missing[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = installed ] || still_missing+=("$package")
done
if [ ${#still_missing[@]} -ne 0 ]; then
    echo "install-deps.sh: still missing after apt-get: ${still_missing[*]}" >&2
    exit 1
fi
echo "install-deps.sh: installed ${missing[*]}"
control_plane
