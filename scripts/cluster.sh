#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for the local stack and
# the tests: etcd, kube-apiserver, kube-scheduler and kube-controller-manager
# built from their Go modules (scripts/cluster/build.sh), and one node:
# either our node agent (scripts/kube-sim/node-agent), running pods as local
# processes on their own 127.x addresses, or a real node (scripts/node.sh):
# the kubelet, kube-proxy and containerd in a network namespace of its own.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/cluster.sh up|down|status|logs|token [OPTIONS]

  up       start etcd, kube-apiserver, kube-scheduler,
           kube-controller-manager and the node; write DIR/kubeconfig
           (admin) and DIR/kubeconfig.node; returns once the API server is
           ready and the node is Ready
  down     stop everything `up` started (the pods with the node)
  status   one line per component: running or not, and the API's readiness
  logs [COMPONENT]
           print the components' logs (or one: etcd, kube-apiserver,
           kube-scheduler, kube-controller-manager, node-agent, and for a
           real node containerd, kubelet, kube-proxy, api-relay)
  token NAMESPACE/NAME [--duration D]
           write DIR/kubeconfig.NAMESPACE.NAME for that service account, with
           a token from the TokenRequest API (default duration 1h); the
           account must exist

Options:
  --dir DIR             state: certificates, etcd data, logs (default .run/cluster)
  --api-port PORT       kube-apiserver's HTTPS port (default 6443)
  --etcd-port PORT      etcd's client port, loopback only (default 2379);
                        its peer port is PORT+1
  --pod-cidr CIDR       the node's pod addresses (default 127.1.0.0/16)
  --node-name NAME      (default pod-router-node)
  --image-map FILE      the node agent's image map (docs/kube-sim.md)
  --start-delay SECONDS the node agent's container start delay (default 0)
  --start-jitter SECONDS
                        up to this much more per pod, drawn at random (default 0)
  --crash-backoff SECONDS
                        the node agent's first restart back-off (default 10)
  --node-cpu QUANTITY   the node's cpu capacity (default 64): its pods are
                        processes without limits, so this only says how
                        many the scheduler may place (2 real cores would
                        stop the user pod template's 50m requests at 40)
  --node-memory QUANTITY
                        the node's memory capacity (default 256Gi)
  --audit-log FILE      the API server's audit log (JSON lines, audit.k8s.io/v1
                        Events at level Metadata) of every request made by a
                        service account of pod-router-system: what the
                        controller and the gateway did, and what RBAC let
                        them (default: no audit log)
  --node KIND           agent: our node agent (the default); kubelet: a
                        real node, the kubelet, kube-proxy and containerd
                        in the network namespace pod-router-node, pods on
                        10.244.0.0/24 behind the host address 10.250.0.1
                        (docs/node.md; one per machine, as root; the options
                        for the node agent do not apply); none: no node
                        (start your own with DIR/kubeconfig.node)
  --no-node             the same as --node none
  --image-archive FILE  a real node: an image archive (docker-archive tar)
                        to load into containerd before the kubelet starts,
                        besides the node's own sandbox and CoreDNS images
                        (which `up` builds or finds in the cache); repeat
                        for several (scripts/images/build.sh makes them)
  --reset               remove DIR's etcd data first: an empty cluster

Environment: POD_ROUTER_KUBE_BINARY, the pod-router-kube binary (default:
what scripts/cluster/build.sh has cached; `up` builds it if missing).
Ports must be free; `up` says which one is taken. docs/cluster.md explains
the set-up and what differs from a production cluster.
EOF
}

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=process-running.sh
. "$here/process-running.sh"

[ $# -ge 1 ] || { usage >&2; exit 2; }
action=$1
shift
dir=.run/cluster api_port=6443 etcd_port=2379 pod_cidr=127.1.0.0/16
node_name=pod-router-node image_map="" start_delay=0 start_jitter=0 crash_backoff=10
node_kind=agent reset=0 duration=1h account="" component="" node_cpu=64 node_memory=256Gi audit_log=""
node_image_archives=()
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) dir=$2; shift 2 ;;
    --api-port) api_port=$2; shift 2 ;;
    --etcd-port) etcd_port=$2; shift 2 ;;
    --pod-cidr) pod_cidr=$2; shift 2 ;;
    --node-name) node_name=$2; shift 2 ;;
    --image-map) image_map=$2; shift 2 ;;
    --start-delay) start_delay=$2; shift 2 ;;
    --start-jitter) start_jitter=$2; shift 2 ;;
    --crash-backoff) crash_backoff=$2; shift 2 ;;
    --node-cpu) node_cpu=$2; shift 2 ;;
    --node-memory) node_memory=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --audit-log) audit_log=$2; shift 2 ;;
    --node) node_kind=$2; shift 2 ;;
    --no-node) node_kind=none; shift ;;
    --image-archive) node_image_archives+=("$(realpath "$2")"); shift 2 ;;
    --reset) reset=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "cluster.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *)
        case "$action" in
        token) account=$1 ;;
        logs) component=$1 ;;
        *) echo "cluster.sh: unexpected argument $1" >&2; exit 2 ;;
        esac
        shift
        ;;
    esac
done
case "$node_kind" in
agent | kubelet | none) ;;
*) echo "cluster.sh: --node takes agent, kubelet or none, not $node_kind" >&2; exit 2 ;;
esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
etcd_peer_port=$((etcd_port + 1))
# shellcheck source=node.sh
. "$here/node.sh"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler node-agent "${node_components[@]}")
server="https://127.0.0.1:$api_port"
# What a real node's kubelet and kube-proxy dial: the relay on the host's
# end of the veth (node.sh).
node_server="https://$node_host_ip:$api_port"

kube_binary() {
    if [ -n "${POD_ROUTER_KUBE_BINARY:-}" ]; then
        [ -x "$POD_ROUTER_KUBE_BINARY" ] || {
            echo "cluster.sh: POD_ROUTER_KUBE_BINARY=$POD_ROUTER_KUBE_BINARY is not an executable file" >&2
            return 1
        }
        echo "$POD_ROUTER_KUBE_BINARY"
        return
    fi
    "$here/cluster/build.sh"
}

pid_of() { cat "$dir/$1.pid" 2>/dev/null || true; }

# --- certificates ---------------------------------------------------------

# One CA signs the serving certificate and every client certificate, and the
# API server trusts it for clients (--client-ca-file): the components and the
# node authenticate by certificate, as kubeadm sets them up. Made once per
# DIR; EC P-256 keys, quick to make.
make_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

client_certificate() {  # NAME COMMON-NAME [ORGANIZATION]
    local name=$1 subject="/CN=$2"
    [ -z "${3:-}" ] || subject="/O=$3$subject"
    [ -f "$dir/pki/$name.crt" ] && return
    make_key "$dir/pki/$name.key"
    openssl req -new -key "$dir/pki/$name.key" -subj "$subject" -out "$dir/pki/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/pki/$name.csr" -CA "$dir/pki/ca.crt" -CAkey "$dir/pki/ca.key" \
        -CAcreateserial -days 365 -out "$dir/pki/$name.crt" \
        -extfile <(printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n') 2>/dev/null
    rm -f "$dir/pki/$name.csr"
}

make_pki() {
    mkdir -p "$dir/pki"
    chmod 700 "$dir/pki"
    if ! [ -f "$dir/pki/ca.crt" ]; then
        make_key "$dir/pki/ca.key"
        openssl req -x509 -new -key "$dir/pki/ca.key" -subj "/CN=pod-router-local-ca" -days 3650 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out "$dir/pki/ca.crt" 2>/dev/null
    fi
    # (A certificate from before real nodes lacks the relay's address.)
    if ! openssl x509 -in "$dir/pki/apiserver.crt" -noout -ext subjectAltName 2>/dev/null |
        grep -qF "IP Address:$node_host_ip"; then
        make_key "$dir/pki/apiserver.key"
        openssl req -new -key "$dir/pki/apiserver.key" -subj "/CN=kube-apiserver" \
            -out "$dir/pki/apiserver.csr" 2>/dev/null
        # The names a client may use: loopback, a real node's relay, and
        # the in-cluster service names (the first address of
        # --service-cluster-ip-range).
        openssl x509 -req -in "$dir/pki/apiserver.csr" -CA "$dir/pki/ca.crt" -CAkey "$dir/pki/ca.key" \
            -CAcreateserial -days 365 -out "$dir/pki/apiserver.crt" -extfile <(printf '%s\n' \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
                "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$node_host_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local") \
            2>/dev/null
        rm -f "$dir/pki/apiserver.csr"
    fi
    # The service-account token signing key pair.
    [ -f "$dir/pki/sa.key" ] || {
        make_key "$dir/pki/sa.key"
        openssl pkey -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
    }
    client_certificate admin pod-router-admin system:masters
    client_certificate kube-controller-manager system:kube-controller-manager
    client_certificate kube-scheduler system:kube-scheduler
    client_certificate node "system:node:$node_name" system:nodes
    # The API server's identity towards kubelets (logs, exec, port-forward).
    client_certificate apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
}

# JSON kubeconfigs: kubectl, client-go, the controller (yaml-cpp reads JSON)
# and the node agent (Python's json) all read them.
write_kubeconfig() {  # FILE USER-NAME then either cert KEY-NAME or token TOKEN [NAMESPACE [SERVER]]
    local file=$1 user=$2 kind=$3 value=$4 namespace=${5:-default} to=${6:-$server} credentials
    if [ "$kind" = cert ]; then
        credentials="\"client-certificate\": \"$dir/pki/$value.crt\", \"client-key\": \"$dir/pki/$value.key\""
    else
        credentials="\"token\": \"$value\""
    fi
    # Readable by root only; the umask is this function's alone (a real
    # node's containerd must not inherit it: image layers would be
    # unreadable to the containers' users).
    local saved_umask
    saved_umask=$(umask)
    umask 077
    cat >"$file.tmp" <<EOF
{
  "apiVersion": "v1",
  "kind": "Config",
  "clusters": [{"name": "pod-router-local", "cluster": {"server": "$to", "certificate-authority": "$dir/pki/ca.crt"}}],
  "users": [{"name": "$user", "user": {$credentials}}],
  "contexts": [{"name": "$user@pod-router-local", "context": {"cluster": "pod-router-local", "user": "$user", "namespace": "$namespace"}}],
  "current-context": "$user@pod-router-local"
}
EOF
    umask "$saved_umask"
    mv "$file.tmp" "$file"
}

# --- processes ----------------------------------------------------------------

port_taken() {  # PORT: whether something listens on 127.0.0.1:PORT already
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_component() {  # NAME COMMAND...
    local name=$1
    shift
    if running "$(pid_of "$name")"; then
        echo "cluster.sh: $name already runs (pid $(pid_of "$name"))" >&2
        return
    fi
    # setsid: its own process group, so that `down` stops it and anything it
    # started (the node agent's pods) together.
    setsid "$@" >>"$dir/$name.log" 2>&1 </dev/null &
    echo $! >"$dir/$name.pid"
}

stop_component() {  # NAME SECONDS
    local name=$1 seconds=$2 pid
    pid=$(pid_of "$name")
    running "$pid" || { rm -f "$dir/$name.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((seconds * 10))); do
        running "$pid" || { rm -f "$dir/$name.pid"; return 0; }
        sleep 0.1
    done
    echo "cluster.sh: $name did not stop within $seconds s; killing it" >&2
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/$name.pid"
}

wait_for() {  # WHAT SECONDS COMPONENT COMMAND...: until COMMAND succeeds
    local what=$1 seconds=$2 name=$3
    shift 3
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        if ! running "$(pid_of "$name")"; then
            echo "cluster.sh: $name exited before $what; the end of $dir/$name.log:" >&2
            tail -n 25 "$dir/$name.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    echo "cluster.sh: $what did not happen within $seconds s; the end of $dir/$name.log:" >&2
    tail -n 25 "$dir/$name.log" >&2 || true
    return 1
}

api_ready() {
    curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
        --key "$dir/pki/admin.key" "$server/readyz" | grep -qx ok
}

node_ready() {
    "$kube" kubectl --kubeconfig "$dir/kubeconfig" --request-timeout 5s get node "$node_name" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

up() {
    kube=$(kube_binary)
    for port in "$api_port" "$etcd_port" "$etcd_peer_port"; do
        if port_taken "$port" && ! running "$(pid_of etcd)" && ! running "$(pid_of kube-apiserver)"; then
            echo "cluster.sh: port $port on 127.0.0.1 is taken by another process; choose others with --api-port / --etcd-port" >&2
            exit 1
        fi
    done
    [ "$reset" = 0 ] || rm -rf "$dir/etcd"
    make_pki
    write_kubeconfig "$dir/kubeconfig" pod-router-admin cert admin
    write_kubeconfig "$dir/kubeconfig.controller-manager" system:kube-controller-manager cert kube-controller-manager
    write_kubeconfig "$dir/kubeconfig.scheduler" system:kube-scheduler cert kube-scheduler
    write_kubeconfig "$dir/kubeconfig.node" "system:node:$node_name" cert node

    # etcd on loopback only, without TLS (as envtest runs it): nothing but
    # the API server on this machine talks to it. --unsafe-no-fsync: a test
    # cluster trades durability across power loss for speed.
    start_component etcd "$kube" etcd --name pod-router-local --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster "pod-router-local=http://127.0.0.1:$etcd_peer_port" \
        --unsafe-no-fsync --log-level warn
    wait_for "etcd answered" 30 etcd curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health"

    local audit=()
    if [ -n "$audit_log" ]; then
        # Only pod-router's own accounts: the components' and the node's
        # requests (leases every few seconds) would bury them.
        cat >"$dir/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:pod-router-system"]
  - level: None
POLICY
        audit=(--audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$audit_log"
            --audit-log-format json --audit-log-mode blocking)
    fi

    # The admission plugins are the defaults (NamespaceLifecycle,
    # ServiceAccount, PodSecurity, ResourceQuota, ...) plus NodeRestriction;
    # the Node authorizer confines the node to its own node's pods.
    local endpoint=()
    if [ "$node_kind" = kubelet ]; then
        # The kubernetes Service's endpoint is the node's relay, which its
        # pods reach through kube-proxy's rules (the default reconciler).
        endpoint=(--advertise-address "$node_host_ip"
            --kubelet-client-certificate "$dir/pki/apiserver-kubelet-client.crt"
            --kubelet-client-key "$dir/pki/apiserver-kubelet-client.key"
            --kubelet-preferred-address-types InternalIP)
    else
        # No endpoint reconciler: the "kubernetes" service's endpoint would
        # be 127.0.0.1, which Endpoints validation refuses.
        endpoint=(--advertise-address 127.0.0.1 --endpoint-reconciler-type none)
    fi
    start_component kube-apiserver "$kube" kube-apiserver \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --bind-address 127.0.0.1 --secure-port "$api_port" "${endpoint[@]}" \
        --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
        --client-ca-file "$dir/pki/ca.crt" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$dir/pki/sa.pub" \
        --service-account-signing-key-file "$dir/pki/sa.key" \
        --service-cluster-ip-range "$node_service_cidr" \
        --allow-privileged=false --profiling=false --cert-dir "$dir/pki/apiserver-generated" \
        ${audit[@]+"${audit[@]}"}
    wait_for "the API server was ready" 90 kube-apiserver api_ready

    start_component kube-controller-manager "$kube" kube-controller-manager \
        --kubeconfig "$dir/kubeconfig.controller-manager" \
        --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
        --use-service-account-credentials \
        --cluster-signing-cert-file "$dir/pki/ca.crt" --cluster-signing-key-file "$dir/pki/ca.key" \
        --leader-elect=false --secure-port 0 --profiling=false
    start_component kube-scheduler "$kube" kube-scheduler \
        --kubeconfig "$dir/kubeconfig.scheduler" --leader-elect=false --secure-port 0
    if [ "$node_kind" = kubelet ]; then
        node_up
    elif [ "$node_kind" = agent ]; then
        local agent=("$here/kube-sim/node-agent" --kubeconfig "$dir/kubeconfig.node"
            --node-name "$node_name" --pod-cidr "$pod_cidr" --state-dir "$dir/node"
            --start-delay "$start_delay" --start-jitter "$start_jitter" --crash-backoff "$crash_backoff"
            --cpu "$node_cpu" --memory "$node_memory")
        [ -z "$image_map" ] || agent+=(--image-map "$image_map")
        start_component node-agent "${agent[@]}"
        wait_for "the node was Ready" 60 node-agent node_ready
    fi
    # The default service account of a namespace is made by the
    # controller-manager; a pod created before it exists is refused.
    wait_for "the default service account existed" 60 kube-controller-manager \
        "$kube" kubectl --kubeconfig "$dir/kubeconfig" --request-timeout 5s get serviceaccount default
    echo "cluster.sh: ready at $server; admin kubeconfig $dir/kubeconfig" >&2
}

down() {
    # The node first: its pods stop while the API can still take their
    # status. Then the clients of the API server, the API server, etcd.
    stop_component node-agent 30
    if [ -f "$(node_state)/kubelet-config.yaml" ]; then
        node_down
    fi
    stop_component kube-scheduler 10
    stop_component kube-controller-manager 10
    stop_component kube-apiserver 30
    stop_component etcd 10
}

status() {
    local name pid failed=0
    for name in "${components[@]}"; do
        pid=$(pid_of "$name")
        if running "$pid"; then
            echo "$name: running (pid $pid)"
        elif ! [ -f "$dir/$name.log" ]; then
            echo "$name: not started here"
        else
            echo "$name: not running"
            failed=1
        fi
    done
    if [ -f "$dir/pki/admin.crt" ] && api_ready; then
        echo "api: ready at $server"
    else
        echo "api: not ready at $server"
        failed=1
    fi
    return "$failed"
}

logs() {
    local name
    for name in "${components[@]}"; do
        [ -z "$component" ] || [ "$component" = "$name" ] || continue
        [ -f "$dir/$name.log" ] || continue
        echo "==> $dir/$name.log <=="
        cat "$dir/$name.log"
    done
}

token() {
    [[ "$account" == */* ]] || { echo "cluster.sh: token needs NAMESPACE/NAME" >&2; exit 2; }
    kube=$(kube_binary)
    local namespace=${account%%/*} name=${account#*/} value
    value=$("$kube" kubectl --kubeconfig "$dir/kubeconfig" --request-timeout 10s \
        create token "$name" --namespace "$namespace" --duration "$duration")
    write_kubeconfig "$dir/kubeconfig.$namespace.$name" "system:serviceaccount:$namespace:$name" \
        token "$value" "$namespace"
    echo "$dir/kubeconfig.$namespace.$name"
}

case "$action" in
up) up ;;
down) down ;;
status) status ;;
logs) logs ;;
token) token ;;
-h | --help) usage ;;
*) usage >&2; exit 2 ;;
esac
