#!/usr/bin/env bash
# What this machine offers a real Kubernetes node (kubelet, kube-proxy,
# containerd, runc, CNI) before one is started: one line per check, "ok" or
# what fails and what that means; exit 1 if a required check fails.
# docs/node.md explains the design these checks serve.
set -uo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/node-check.sh [--dir DIR]

Checks, as root, what a real node on this machine needs: cgroups, swap,
/dev/kmsg, overlayfs on DIR's filesystem, network namespaces with a veth
pair and a bridge, bridge netfilter and forwarding inside one, the iptables
matches kube-proxy writes, conntrack, the node's binaries, and that the
node's address ranges are free. The namespace checks use a throw-away
namespace (pod-router-check) and delete it again; nothing else changes.

  --dir DIR   where the node would keep its state (default .run/node):
              the overlayfs check mounts there for a moment

Exit status: 0 when every required check passed, 1 otherwise, 2 on usage.
EOF
}

dir=.run/node
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "node-check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

# The ranges of docs/node.md's topology.
pod_range=10.244.0.0/16 link_range=10.250.0.0/30 service_range=10.96.0.0/16
check_netns=pod-router-check
failed=0

ok() { printf 'ok    %-22s %s\n' "$1" "$2"; }
bad() { printf 'FAIL  %-22s %s\n' "$1" "$2"; failed=1; }
note() { printf 'note  %-22s %s\n' "$1" "$2"; }

if [ "$(id -u)" != 0 ]; then
    bad root "run as root: a node creates namespaces, mounts and iptables rules"
    exit 1
fi
ok root "uid 0"

# --- cgroups ------------------------------------------------------------------
cgroup_fs=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo none)
case "$cgroup_fs" in
tmpfs)
    missing=()
    for controller in cpu cpuacct cpuset memory pids devices freezer; do
        awk '$3 == "cgroup" { print $4 }' /proc/mounts | tr , '\n' | grep -qx "$controller" ||
            missing+=("$controller")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        ok cgroups "v1: cpu cpuacct cpuset memory pids devices freezer mounted"
    else
        bad cgroups "v1 without ${missing[*]}: the kubelet's system validation and runc need them"
    fi
    if [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
        ok cpu-quota "CFS quota: CPU limits are enforced"
    else
        bad cpu-quota "no cpu.cfs_quota_us: CPU limits would not be enforced"
    fi
    ;;
cgroup2fs) ok cgroups "v2 (unified)" ;;
*) bad cgroups "nothing mounted on /sys/fs/cgroup ($cgroup_fs)" ;;
esac
if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    note init "systemd: the node still uses the cgroupfs driver, as containerd is set up"
else
    ok init "not systemd: the cgroupfs driver"
fi

# --- swap, kmsg, overlayfs ----------------------------------------------------
if [ "$(wc -l </proc/swaps)" -le 1 ]; then
    ok swap "off"
else
    note swap "on: the kubelet runs with failSwapOn: false"
fi
if [ -c /dev/kmsg ] && head -c0 /dev/kmsg 2>/dev/null; then
    ok kmsg "/dev/kmsg readable (the kubelet's OOM watcher)"
else
    bad kmsg "/dev/kmsg missing or unreadable: the kubelet's OOM watcher fails"
fi
if ! grep -qw overlay /proc/filesystems; then
    bad overlayfs "the kernel has no overlay filesystem: containerd's snapshotter cannot start a container"
else
    mkdir -p "$dir"
    probe=$(mktemp -d "$dir/overlay-check.XXXXXX")
    mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
    if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
        "$probe/merged" 2>/dev/null; then
        umount "$probe/merged"
        ok overlayfs "mounts on $(stat -fc %T "$dir")"
    else
        bad overlayfs "no overlay mount on $dir ($(stat -fc %T "$dir")): choose --dir on ext4 or xfs"
    fi
    rm -rf "$probe"
fi

# --- network namespaces -------------------------------------------------------
in_check() { ip netns exec "$check_netns" "$@"; }
ip netns del "$check_netns" 2>/dev/null
if ip netns add "$check_netns" 2>/dev/null &&
    ip link add prn-check0 type veth peer name prn-check1 netns "$check_netns" 2>/dev/null &&
    in_check ip link add prn-check-br type bridge 2>/dev/null &&
    in_check ip link set lo up 2>/dev/null; then
    ok netns "a namespace with a veth pair and a bridge"
    if [ "$(in_check cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ]; then
        ok bridge-netfilter "bridge-nf-call-iptables is 1 in a new namespace"
    else
        bad bridge-netfilter "no bridge netfilter in a namespace: Services between pods on one bridge fail"
    fi
    if in_check sysctl -qw net.ipv4.ip_forward=1 2>/dev/null; then
        ok ip-forward "settable in a namespace"
    else
        bad ip-forward "cannot turn on forwarding in a namespace: pods cannot reach the host side"
    fi
    if ! command -v iptables >/dev/null; then
        bad iptables "no iptables command (Debian package iptables)"
    elif refused=$(in_check iptables -t nat -N PRN-CHECK 2>&1 &&
        in_check iptables -t nat -A PRN-CHECK -p tcp -m comment --comment check -m statistic \
            --mode random --probability 0.5 -m addrtype --dst-type LOCAL \
            -j DNAT --to-destination 10.244.0.2:80 2>&1 &&
        in_check iptables -t nat -A PRN-CHECK -m conntrack --ctstate DNAT -j MASQUERADE 2>&1); then
        ok iptables "$(iptables --version 2>/dev/null): kube-proxy's matches and targets work"
    else
        bad iptables "a rule as kube-proxy writes them (comment, statistic, addrtype, conntrack, DNAT, MASQUERADE) is refused: ${refused//$'\n'/ }"
    fi
    ip link del prn-check0 2>/dev/null
else
    bad netns "cannot make a namespace with a veth pair and a bridge: the node's topology cannot be built"
fi
ip netns del "$check_netns" 2>/dev/null
if [ -r /proc/sys/net/netfilter/nf_conntrack_max ]; then
    ok conntrack "present"
else
    bad conntrack "no connection tracking: kube-proxy cannot work"
fi

# --- binaries -----------------------------------------------------------------
missing=()
for binary in containerd containerd-shim-runc-v2 runc ctr nsenter socat iptables-restore; do
    command -v "$binary" >/dev/null || missing+=("$binary")
done
for plugin in bridge host-local loopback portmap; do
    [ -x "/usr/lib/cni/$plugin" ] || missing+=("/usr/lib/cni/$plugin")
done
if [ ${#missing[@]} -eq 0 ]; then
    ok binaries "containerd $(containerd --version 2>/dev/null | awk '{print $3}'), runc, ctr, CNI plugins, nsenter, socat"
else
    bad binaries "missing ${missing[*]} (scripts/install-deps.sh installs them)"
fi

# --- address ranges -----------------------------------------------------------
taken=()
for range in "$pod_range" "$link_range" "$service_range"; do
    if ip -4 route show to match "${range%/*}" | grep -qv '^default'; then
        taken+=("$range")
    fi
done
if ip netns list 2>/dev/null | grep -qw pod-router-node; then
    note leftovers "the namespace pod-router-node exists: a node runs, or one was not stopped"
fi
if [ ${#taken[@]} -eq 0 ]; then
    ok addresses "$pod_range, $link_range, $service_range not routed here"
else
    bad addresses "already routed on this machine: ${taken[*]}"
fi

exit "$failed"
