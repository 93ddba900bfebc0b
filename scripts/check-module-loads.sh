#!/usr/bin/env bash
# Runs `nginx -t` on a minimal configuration that loads the module and routes
# a location through it: nginx refuses a module built for another version or
# with other configure flags ("is not binary compatible"), and the dynamic
# loader one whose libraries are missing. The images run it on their final
# stage, as the user they run as; tests/images runs it on the recipe's output.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/check-module-loads.sh --nginx BINARY --module FILE

  --nginx BINARY  the nginx that will load the module
  --module FILE   ngx_http_pod_router_module.so
EOF
}

nginx="" module=""
while [ $# -gt 0 ]; do
    case "$1" in
    --nginx) nginx=$2; shift 2 ;;
    --module) module=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check-module-loads.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$nginx" ] || [ -z "$module" ]; then
    usage >&2
    exit 2
fi
module=$(cd "$(dirname "$module")" && pwd)/$(basename "$module")

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
# Nothing is listened on or connected to: nginx -t only parses, loads and
# initialises. Addresses are literal so that no name is resolved. Temporary
# paths stay at the binary's defaults, which the images make writable for
# their user.
cat >"$prefix/nginx.conf" <<EOF
load_module $module;
pid $prefix/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    pod_router_redis 127.0.0.1:6379;
    pod_router_amqp amqp://127.0.0.1:5672/;
    upstream pod_router_pods {
        pod_router_balancer;
    }
    server {
        listen 127.0.0.1:8080;
        location / {
            pod_router on;
            pod_router_identity \$http_x_user_id;
            pod_router_allow_cidr 10.0.0.0/8;
            proxy_pass http://pod_router_pods;
        }
    }
}
EOF

if ! "$nginx" -t -q -e stderr -p "$prefix" -c "$prefix/nginx.conf"; then
    echo "check-module-loads.sh: $nginx does not load $module" >&2
    exit 1
fi
echo "check-module-loads.sh: $("$nginx" -v 2>&1 | sed 's/^nginx version: //') loads $(basename "$module")"
