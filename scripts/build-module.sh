#!/usr/bin/env bash
# Builds ngx_http_pod_router_module.so against Debian's nginx-dev source tree
# with Debian's own configure flags, so that the packaged nginx can
# load_module it (--with-compat alone is not enough: the flags decide the
# layout of nginx's structures). NGINX_SRC names another tree laid out the
# same way (scripts/prepare-nginx-src.sh makes one for the ingress-nginx image).
#
# nginx's configure takes seconds and rewrites every object's dependencies,
# so it runs only when its inputs change (recorded in a stamp file); every
# other build is nginx's own incremental "make modules".
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build-module.sh --module-dir DIR --core-lib FILE --work-dir DIR --output FILE

  --module-dir DIR   the module's source folder (holds its nginx "config" file)
  --core-lib FILE    libpod_router_core.a, built with -fPIC
  --work-dir DIR     where the configured nginx tree lives (reused across builds)
  --output FILE      where to put the finished .so

Environment:
  NGINX_SRC          nginx source tree with conf_flags (default /usr/share/nginx/src,
                     from Debian's nginx-dev)
EOF
}

module_dir="" core_lib="" work_dir="" output=""
while [ $# -gt 0 ]; do
    case "$1" in
    --module-dir) module_dir=$2; shift 2 ;;
    --core-lib) core_lib=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "build-module.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$module_dir" ] || [ -z "$core_lib" ] || [ -z "$work_dir" ] || [ -z "$output" ]; then
    usage >&2
    exit 2
fi

nginx_src=${NGINX_SRC:-/usr/share/nginx/src}
if [ ! -f "$nginx_src/conf_flags" ] || [ ! -x "$nginx_src/configure" ]; then
    echo "build-module.sh: no nginx source tree with conf_flags at $nginx_src;" \
        "install nginx-dev (scripts/install-deps.sh)" >&2
    exit 1
fi
if [ ! -f "$core_lib" ]; then
    echo "build-module.sh: core library $core_lib is missing; build it first (make)" >&2
    exit 1
fi

module_dir=$(cd "$module_dir" && pwd)
core_lib=$(cd "$(dirname "$core_lib")" && pwd)/$(basename "$core_lib")
tree="$work_dir/src"
stamp="$work_dir/configure.stamp"
log="$work_dir/configure.log"
module_name=ngx_http_pod_router_module

# Anything that changes what configure would generate.
wanted_stamp=$(
    cat "$nginx_src/conf_flags" "$module_dir/config"
    echo "$module_dir" "$core_lib"
    ls -l --time-style=+%s "$nginx_src/configure"
)

if [ ! -f "$tree/objs/Makefile" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted_stamp" ]; then
    echo "build-module.sh: configuring nginx $(basename "$(readlink -f "$nginx_src")") tree in $tree"
    rm -rf "$tree"
    mkdir -p "$work_dir"
    cp -r "$nginx_src" "$tree"
    # conf_flags defines NGX_CONF_FLAGS, the flags Debian's nginx was built with.
    if ! (
        cd "$tree"
        # shellcheck disable=SC1091
        . ./conf_flags
        POD_ROUTER_CORE_LIB="$core_lib" ./configure "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$module_dir"
    ) >"$log" 2>&1; then
        echo "build-module.sh: nginx configure failed; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    printf '%s' "$wanted_stamp" >"$stamp"
fi

# nginx's Makefile does not know the archive is an input of the link.
so="$tree/objs/$module_name.so"
if [ -f "$so" ] && [ "$core_lib" -nt "$so" ]; then
    rm -f "$so"
fi

env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$tree" -f objs/Makefile modules >"$work_dir/make.log" 2>&1 || {
    echo "build-module.sh: building the module failed:" >&2
    grep -E 'error|warning|undefined' "$work_dir/make.log" | head -n 40 >&2 || tail -n 40 "$work_dir/make.log" >&2
    exit 1
}
# Warnings fail the build too (nginx compiles with -Werror); show any linker notes.
grep -E 'warning' "$work_dir/make.log" >&2 || true

if ! cmp -s "$so" "$output"; then
    cp "$so" "$output.tmp"
    mv "$output.tmp" "$output"
fi
