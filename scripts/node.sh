# shellcheck shell=bash disable=SC2034,SC2154
# Sourced by scripts/cluster.sh for `--node kubelet`: a real Kubernetes node
# on this machine, beside the control plane. containerd (Debian's), runc and
# the CNI plugins run the pods; the kubelet and kube-proxy come from the same
# multi-call binary as the control plane. docs/node.md explains the design;
# this file is its one source for the node's addresses and settings.
#
# Everything of the node lives in one network namespace, so that its pods,
# bridge and iptables rules never touch the host's interfaces:
#
#   host: 127.0.0.1 (control plane)   netns pod-router-node
#   prn-host 10.250.0.1/30 ---veth--- prn-node 10.250.0.2/30 (the node's IP)
#   routes to pods and Services       cni0 10.244.0.1/24, pods 10.244.0.0/24
#   via 10.250.0.2                    Services 10.96.0.0/16, DNS 10.96.0.10
#
# It uses cluster.sh's dir, kube, api_port, node_name, node_server and its
# helpers (start_component, stop_component, wait_for, client_certificate,
# write_kubeconfig, pid_of), and sets variables cluster.sh reads: hence the
# two shellcheck warnings turned off above, for this file only.

node_netns=pod-router-node
node_host_link=prn-host node_link=prn-node
node_host_ip=10.250.0.1 node_ip=10.250.0.2 node_link_prefix=30
node_pod_subnet=10.244.0.0/24 node_pod_gateway=10.244.0.1 node_cluster_cidr=10.244.0.0/16
node_service_cidr=10.96.0.0/16 node_dns_ip=10.96.0.10
node_components=(containerd kubelet kube-proxy api-relay)
node_volume_count=6  # local PersistentVolumes: Redis and RabbitMQ take one each
# Host-wide sysctls the kubelet rewrites when it starts (it does not keep
# them per namespace): saved by `up`, put back by `down`.
node_host_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Which cluster folder the machine's one node belongs to, so that a `down`
# of another cluster never takes it away.
node_owner_file=/run/pod-router-node.owner

node_state() { echo "$dir/node"; }
node_socket() { echo "$(node_state)/run/containerd.sock"; }
in_node() { nsenter --net="/run/netns/$node_netns" -- "$@"; }

node_ctr() {  # ARGS...: ctr on the node's containerd, in the kubelet's namespace
    ctr --address "$(node_socket)" --namespace k8s.io --timeout 30s "$@"
}

# --- network --------------------------------------------------------------------

node_network_up() {
    ip netns add "$node_netns"
    ip link add "$node_host_link" type veth peer name "$node_link" netns "$node_netns"
    ip addr add "$node_host_ip/$node_link_prefix" dev "$node_host_link"
    ip link set "$node_host_link" up
    in_node ip link set lo up
    in_node ip addr add "$node_ip/$node_link_prefix" dev "$node_link"
    in_node ip link set "$node_link" up
    # The node's only way out is the host side of the veth: no default
    # route anywhere else, and the host forwards nothing (its ip_forward
    # stays as it is).
    in_node ip route add default via "$node_host_ip"
    in_node sysctl -qw net.ipv4.ip_forward=1
    in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1
    # The host reaches pods and Services through the node.
    ip route add "$node_cluster_cidr" via "$node_ip"
    ip route add "$node_service_cidr" via "$node_ip"
    # A guard of ours, which kube-proxy never rewrites: nothing leaves the
    # node for another address than the host's end of the veth. Filter
    # OUTPUT and FORWARD come after kube-proxy's DNAT, so a Service's
    # traffic is judged by where it really goes.
    in_node iptables -w 5 -N PRN-GUARD
    in_node iptables -w 5 -A PRN-GUARD -o "$node_link" -d "$node_host_ip" -j RETURN
    in_node iptables -w 5 -A PRN-GUARD -o "$node_link" -j DROP
    in_node iptables -w 5 -I OUTPUT 1 -j PRN-GUARD
    in_node iptables -w 5 -I FORWARD 1 -j PRN-GUARD
}

node_network_down() {
    ip route del "$node_cluster_cidr" via "$node_ip" 2>/dev/null || true
    ip route del "$node_service_cidr" via "$node_ip" 2>/dev/null || true
    # The veth pair and cni0 go with the namespace.
    ip netns del "$node_netns" 2>/dev/null || true
    ip link del "$node_host_link" 2>/dev/null || true
}

# --- configuration -------------------------------------------------------------

node_write_config() {
    local state
    state=$(node_state)
    mkdir -p "$state/run" "$state/cni/net.d" "$state/cni/ipam" "$state/kubelet" \
        "$state/pod-logs" "$state/volume-plugins" "$state/containerd"
    # The pods' network: a bridge with host-local addresses, and portmap for
    # hostPort. Written before containerd starts: the node reports its
    # network ready only once a configuration exists.
    cat >"$state/cni/net.d/10-pod-router.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pod-router",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$state/cni/ipam",
              "ranges": [[{"subnet": "$node_pod_subnet", "gateway": "$node_pod_gateway"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    # containerd 1.6 (Debian's): every path private to this node, the
    # sandbox image ours (no registry can be reached), runc with cgroupfs
    # as the kubelet (PID 1 is not systemd here). restrict_oom_score_adj:
    # where root lacks CAP_SYS_RESOURCE (this VM), no process may lower its
    # OOM score below containerd's own, and the kubelet asks -998 for every
    # sandbox; containerd then raises what is asked to its own score
    # instead of runc failing the container.
    cat >"$state/containerd/config.toml" <<EOF
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$(node_socket)"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$node_pause_image"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$state/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$state/cni/net.d"
    max_conf_num = 1
EOF
    # The kubelet. Image garbage collection is off (an image cannot be
    # pulled back here, and containerd 1.6.20 does not pin the sandbox
    # image); disk eviction is off (the disk is shared with the rest of the
    # machine; every evictionHard key is listed, as a partial map replaces
    # the defaults); resolvConf is empty so that no pod inherits the host's
    # resolver.
    cat >"$state/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$(node_socket)
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
address: $node_ip
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
rotateCertificates: false
serverTLSBootstrap: false
clusterDomain: cluster.local
clusterDNS: [$node_dns_ip]
resolvConf: ""
podLogsDir: $state/pod-logs
volumePluginDir: $state/volume-plugins
imageGCHighThresholdPercent: 100
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
EOF
    # kube-proxy in iptables mode. The conntrack table's size is global and
    # read-only from a namespace (maxPerCore 0 leaves it alone); NodePorts
    # answer on the node's IP only, never on a loopback.
    cat >"$state/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $dir/kubeconfig.kube-proxy}
hostnameOverride: $node_name
clusterCIDR: $node_cluster_cidr
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables: {localhostNodePorts: false, minSyncPeriod: 1s, syncPeriod: 30s}
conntrack: {maxPerCore: 0}
EOF
}

# --- what every cluster has: DNS and storage ---------------------------------------

# Cluster DNS: CoreDNS built from its Go module (scripts/coredns), as a
# Deployment behind the kube-dns Service at the address the kubelet gives
# pods. It answers the cluster's zones only and forwards nothing (the
# host's resolver must not be reached); it listens on 1053 so that it runs
# without any capability. Local storage: a default StorageClass without a
# provisioner and a few local PersistentVolumes in the node's folder, for
# the StatefulSets' claims (bound where the pod is scheduled).
node_addons() {
    local state volume
    state=$(node_state)
    {
        cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-node
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
        for volume in $(seq 1 "$node_volume_count"); do
            mkdir -p "$state/volumes/pv-$volume"
            cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-node-pv-$volume
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-node
  local: {path: $state/volumes/pv-$volume}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: kubernetes.io/hostname, operator: In, values: [$node_name]}
EOF
        done
        cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [services, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    cluster.local:1053 in-addr.arpa:1053 ip6.arpa:1053 {
        errors
        health :8080 {
            lameduck 5s
        }
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            ttl 30
        }
        prometheus :9153
        cache 30
        loadbalance
        reload
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
        - name: coredns
          image: $node_coredns_image
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 1053, protocol: UDP}
            - {name: dns-tcp, containerPort: 1053, protocol: TCP}
            - {name: metrics, containerPort: 9153, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          livenessProbe:
            httpGet: {path: /health, port: 8080}
            periodSeconds: 10
            failureThreshold: 5
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {memory: 170Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $node_dns_ip
  ports:
    - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
    - {name: metrics, port: 9153, protocol: TCP}
EOF
    } >"$state/addons.yaml"
    "$kube" kubectl --kubeconfig "$dir/kubeconfig" --request-timeout 30s apply -f "$state/addons.yaml" >/dev/null
}

node_dns_ready() {
    "$kube" kubectl --kubeconfig "$dir/kubeconfig" --request-timeout 5s -n kube-system \
        get deployment coredns -o 'jsonpath={.status.readyReplicas}' | grep -qx 1
}

# --- lifecycle --------------------------------------------------------------------

node_save_sysctls() {
    local state file name
    state=$(node_state)
    file="$state/host-sysctls"
    [ -f "$file" ] && return  # an earlier up saved the machine's own values
    for name in "${node_host_sysctls[@]}"; do
        echo "$name=$(sysctl -n "$name")"
    done >"$file.tmp"
    mv "$file.tmp" "$file"
}

node_restore_sysctls() {
    local file
    file="$(node_state)/host-sysctls"
    [ -f "$file" ] || return 0
    sysctl -qp "$file" >/dev/null || echo "cluster.sh: could not restore the host's sysctls from $file" >&2
    rm -f "$file"
}

# The node's own images, the sandbox (pause) and CoreDNS: built here, or
# found in the cache (scripts/images/build.sh). Sets node_pause_image and
# node_coredns_image, which containerd's and CoreDNS's settings name.
node_own_images() {
    local name ref archive
    while read -r name ref archive; do
        case "$name" in
        pause) node_pause_image=$ref ;;
        coredns) node_coredns_image=$ref ;;
        esac
        node_image_archives+=("$archive")
    done < <("$here/images/build.sh" --only pause,coredns)
    [ -n "${node_pause_image:-}" ] && [ -n "${node_coredns_image:-}" ] || {
        echo "cluster.sh: scripts/images/build.sh gave no pause or coredns image" >&2
        return 1
    }
}

node_import_images() {
    local archive
    for archive in "${node_image_archives[@]}"; do
        node_ctr images import --all-platforms "$archive" >/dev/null ||
            { echo "cluster.sh: containerd could not import $archive" >&2; return 1; }
    done
}

node_runtime_ready() { node_ctr version; }

node_up() {
    local state
    state=$(node_state)
    # One node per machine: its namespace, addresses and routes are fixed.
    local owner
    owner=$(cat "$node_owner_file" 2>/dev/null || true)
    if [ -n "$owner" ] && running "$(cat "$owner/kubelet.pid" 2>/dev/null)"; then
        echo "cluster.sh: a real node already runs on this machine, for $owner (stop it with: scripts/cluster.sh down --dir $owner)" >&2
        return 1
    fi
    if [ -n "$owner" ] || ip netns list 2>/dev/null | grep -qw "$node_netns"; then
        echo "cluster.sh: cleaning up after a node that was not stopped (${owner:-owner unknown})" >&2
        if [ -n "$owner" ] && [ "$owner" != "$dir" ] && [ -d "$owner" ]; then
            "$here/cluster.sh" down --dir "$owner" || true
        else
            node_down
        fi
        node_network_down
        rm -f "$node_owner_file"
    fi
    echo "$dir" >"$node_owner_file"
    if ! "$here/node-check.sh" --dir "$state" >"$dir/node-check.log" 2>&1; then
        echo "cluster.sh: this machine cannot run a real node:" >&2
        grep '^FAIL' "$dir/node-check.log" >&2 || cat "$dir/node-check.log" >&2
        return 1
    fi
    node_own_images
    client_certificate kube-proxy system:kube-proxy
    write_kubeconfig "$dir/kubeconfig.kubelet" "system:node:$node_name" cert node default "$node_server"
    write_kubeconfig "$dir/kubeconfig.kube-proxy" system:kube-proxy cert kube-proxy default "$node_server"
    node_write_config
    node_save_sysctls
    node_network_up
    # The API server stays on loopback; the node reaches it through a relay
    # on the host's end of the veth (the address the API server advertises
    # as the kubernetes Service's endpoint).
    start_component api-relay socat "TCP-LISTEN:$api_port,bind=$node_host_ip,reuseaddr,fork" \
        "TCP:127.0.0.1:$api_port"
    # nsenter --net, not ip netns exec: the latter remounts /sys (hiding the
    # cgroup hierarchies from the kubelet) and gives each daemon its own
    # mount namespace (containerd would not see the kubelet's volumes).
    start_component containerd nsenter --net="/run/netns/$node_netns" -- \
        containerd --config "$state/containerd/config.toml"
    wait_for "containerd answered" 30 containerd node_runtime_ready
    node_import_images
    start_component kubelet nsenter --net="/run/netns/$node_netns" -- "$kube" kubelet \
        --config "$state/kubelet-config.yaml" --kubeconfig "$dir/kubeconfig.kubelet" \
        --hostname-override "$node_name" --node-ip "$node_ip" \
        --root-dir "$state/kubelet" --cert-dir "$state/kubelet/pki"
    start_component kube-proxy nsenter --net="/run/netns/$node_netns" -- "$kube" kube-proxy \
        --config "$state/kube-proxy-config.yaml"
    wait_for "the node was Ready" 120 kubelet node_ready
    node_addons
    wait_for "cluster DNS was ready (kubectl -n kube-system describe pod -l k8s-app=kube-dns)" 120 \
        kubelet node_dns_ready
}

# Containers outlive a stopped kubelet and containerd (their shims keep
# them), and their cgroups lie outside this session's: stop them through
# containerd first, then the daemons, then what is left mounted.
node_down() {
    local state task
    state=$(node_state)
    stop_component kube-proxy 10
    stop_component kubelet 20
    if running "$(pid_of containerd)"; then
        for task in $(node_ctr tasks ls -q 2>/dev/null); do
            node_ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
        done
        for _ in $(seq 50); do
            node_ctr tasks ls 2>/dev/null | awk 'NR > 1 && $3 != "STOPPED"' | grep -q . || break
            sleep 0.1
        done
        for task in $(node_ctr tasks ls -q 2>/dev/null); do
            node_ctr tasks delete --force "$task" >/dev/null 2>&1 || true
        done
    fi
    stop_component containerd 20
    stop_component api-relay 5
    # What the kubelet and containerd mounted under the node's folder:
    # volumes, the pods' network namespaces, the containers' root
    # filesystems; deepest first.
    { findmnt -rn -o TARGET | grep -F "$state/" || true; } | sort -r | while read -r target; do
        umount -l "$target" 2>/dev/null || true
    done
    if [ "$(cat "$node_owner_file" 2>/dev/null)" = "$dir" ]; then
        node_network_down
        rm -f "$node_owner_file"
        # The pods' cgroups, empty now (the machine's one node made them).
        find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
    fi
    node_restore_sysctls
}
