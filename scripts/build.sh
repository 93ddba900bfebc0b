#!/usr/bin/env bash
# Configures and builds pod-router with CMake: everything (make), or only the
# part an image ships (the Dockerfiles), so that both run the same recipe.
#
# A build folder is configured once, with the flags of its first run; later
# runs only build (as make always did). Delete the folder to change its flags.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build.sh [--target all|controller|module] [--build-dir DIR] [--jobs N]
                        [--configure-only] [-- CMAKE_ARGS...]

  --target all         everything make builds, tests included (default)
  --target controller  pod-router-controller alone, without the tests
  --target module      ngx_http_pod_router_module.so alone, without the tests or
                       the controller; NGINX_SRC names the nginx tree (see
                       scripts/build-module.sh)
  --build-dir DIR      CMake build folder (default: build)
  --jobs N             parallel jobs (default: nproc)
  --configure-only     configure the build folder if it is new, build nothing
  CMAKE_ARGS           passed to CMake's configure step (first run only)

Outputs: DIR/controller/pod-router-controller, DIR/ngx_http_pod_router_module.so
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
target=all build_dir=build jobs=$(nproc) configure_only=false
while [ $# -gt 0 ]; do
    case "$1" in
    --target) target=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --configure-only) configure_only=true; shift ;;
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

# What each target configures and builds; the CMake options are in the
# top-level CMakeLists.txt. All keep CMake's default build type, the one the
# tests run (RelWithDebInfo: -O2 -g -DNDEBUG); the images strip the binary.
case "$target" in
all)
    options=()
    cmake_targets=(all)
    ;;
controller)
    options=(-DPOD_ROUTER_TESTS=OFF -DPOD_ROUTER_NGINX_MODULE=OFF)
    cmake_targets=(pod-router-controller)
    ;;
module)
    options=(-DPOD_ROUTER_TESTS=OFF -DPOD_ROUTER_CONTROLLER=OFF -DPOD_ROUTER_NGINX_MODULE=ON)
    cmake_targets=(nginx_module)
    ;;
*)
    echo "build.sh: unknown target: $target (all, controller or module)" >&2
    exit 2
    ;;
esac

if [ ! -f "$build_dir/CMakeCache.txt" ]; then
    cmake -S "$repo" -B "$build_dir" "${options[@]}" "$@"
fi
if $configure_only; then
    exit 0
fi
cmake --build "$build_dir" -j "$jobs" --target "${cmake_targets[@]}"
