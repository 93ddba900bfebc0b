#!/usr/bin/env bash
# Installs the Debian 12 packages that pod-router's build, local stack and
# tests need. Idempotent: does nothing when everything is present. As root it
# installs what is missing; otherwise it prints the exact command to run.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install-deps.sh [--bench] [--check] [--list]

Installs what is missing of the packages pod-router needs (Debian 12).

  --bench   also what make bench needs: wrk, the OpenResty-style and the
            seed's gateways it compares against, gnuplot for its chart
  --check   only report what is missing; exit 1 if anything is
  --list    print every package, one per line, and exit
EOF
}

# One group per need, so that a missing package says why it is wanted.
build_packages=(
    g++ make cmake pkg-config
    nginx nginx-dev                 # the packaged nginx, and its source tree + flags for modules
    libjansson-dev libssl-dev       # the shared core: JSON, digests
    libhiredis-dev librabbitmq-dev  # the module and controller: Redis, RabbitMQ
    libcurl4-openssl-dev            # the controller: Kubernetes API
    libyaml-cpp-dev                 # the controller: kubeconfig and pod templates
    libcli11-dev                    # the controller: command line
    libcpp-httplib-dev              # the controller: /healthz, /readyz, /metrics
)
stack_packages=(
    redis-server rabbitmq-server
    python3 openssl                 # kube-sim, the local Kubernetes API (and its certificates)
    curl                            # make run: readiness checks, and the demo's requests
)
test_packages=(
    libcmocka-dev
    python3-pytest python3-kubernetes python3-redis python3-pika
    valgrind                        # the gateway tests again under memcheck
)
tool_packages=(
    clang-14 libclang-rt-14-dev     # make fuzz (libFuzzer, sanitizers)
    clang-format clang-tidy cppcheck # make format, make lint
    python3-pyflakes                # make test's style tier for the Python code
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
packages=("${build_packages[@]}" "${stack_packages[@]}" "${test_packages[@]}" "${tool_packages[@]}")

check_only=false
while [ $# -gt 0 ]; do
    case "$1" in
    --bench) packages+=("${bench_packages[@]}") ;;
    --check) check_only=true ;;
    --list) printf '%s\n' "${packages[@]}"; exit 0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-deps.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

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
if ! command -v kubectl >/dev/null 2>&1; then
    echo "install-deps.sh: warning: kubectl is not on the PATH; make run and the tests need kubectl 1.32" >&2
fi

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps.sh: all ${#packages[@]} packages are installed"
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
# its own Redis, RabbitMQ and nginx on its own ports and folders, so keep the
# system-wide ones from starting (and from holding ports 80, 5672, 6379),
# unless the machine already has a policy of its own.
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
