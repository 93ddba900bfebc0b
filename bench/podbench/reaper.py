"""Phase 5, the reaper at scale: 100,000 ready sessions in Redis, 100 of
them idle past the timeout and backed by real pods, on kube-sim and on the
real control plane. What one reaper pass
costs with nothing to do, what the pass that reaps the 100 costs, and the
controller's RSS; at the controller's default API rate limit and at a
raised one, because deleting is what the pass waits for.

The controller is started before the sessions are written, so that the
reconciler's pass at election (which would forget ready sessions whose pod
does not exist, as 99,900 of these have none) is already behind it; its
next pass is an hour away."""

import time

from kubernetes import client as kube_client
from kubernetes import config as kube_config

from . import servers
from .system import USER_NAMESPACE, write_ready_sessions

SESSIONS, EXPIRED, QUIET_SECONDS = 100_000, 100, 5
HISTOGRAM = "pod_router_controller_reap_tick_seconds"
REAPED = "pod_router_controller_pods_reaped_total"


def create_idle_pods(core, backend_port):
    """EXPIRED pods as the controller creates them (its managed-by label and
    identity annotation; the namespace's PodSecurity level, restricted);
    returns {pod: ip}. Waits first for the previous rate's pods of the same
    names to be gone: a real API server keeps a deleted pod until its node
    has stopped it."""
    names = [f"user-idle-{n}" for n in range(EXPIRED)]
    servers.wait_until(lambda: not any(pod.metadata.name in names
                                       for pod in core.list_namespaced_pod(USER_NAMESPACE).items),
                       timeout=120, what="the previous idle pods gone")
    for name in names:
        core.create_namespaced_pod(USER_NAMESPACE, {
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pod-router"},
                         "annotations": {"pod-router.io/identity": name[len("user-"):]}},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 101,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "web", "image": "bench/backend",
                                     "ports": [{"containerPort": backend_port}],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}]}})

    def addresses():
        pods = core.list_namespaced_pod(USER_NAMESPACE).items
        found = {pod.metadata.name: pod.status.pod_ip for pod in pods if pod.status.pod_ip}
        return found if all(name in found for name in names) else None
    servers.wait_until(addresses, timeout=60, what="the idle pods' addresses")
    return {name: address for name, address in addresses().items() if name in names}


def seed_sessions(client, idle_pods, backend_port):
    """SESSIONS ready sessions: the idle pods' first, then ones whose pods
    do not exist (the reaper never reaches them). Returns now in ms."""
    idle = list(idle_pods.items())
    active = ((f"user-active-{n}", "127.1.255.254") for n in range(len(idle), SESSIONS))
    return write_ready_sessions(client, ((pod, pod[len("user-"):], ip) for pod, ip in (*idle, *active)),
                                backend_port)


def one_rate(system, qps_flags, log):
    client = system.redis_client()
    client.flushall()
    system.start_controller("--reap-interval", "1s", "--reconcile-interval", "1h", *qps_flags)
    try:
        servers.wait_until(lambda: system.controller_metrics().get("pod_router_controller_leader") == 1,
                           timeout=60, what="the controller's leadership")
        time.sleep(2)  # the reconciler's pass at election
        kube_config.load_kube_config(config_file=str(system.kube.kubeconfig))
        idle_pods = create_idle_pods(kube_client.CoreV1Api(), system.backend_port)
        now_ms = seed_sessions(client, idle_pods, system.backend_port)

        def ticks():
            metrics = system.controller_metrics()
            return metrics[f"{HISTOGRAM}_count"], metrics[f"{HISTOGRAM}_sum"]
        count0, sum0 = ticks()
        time.sleep(QUIET_SECONDS)
        count1, sum1 = ticks()
        quiet_ms = 1000 * (sum1 - sum0) / (count1 - count0)
        reaped0 = system.controller_metrics().get(REAPED, 0)
        client.zadd("pod-router:activity", {pod: now_ms - 3_600_000 for pod in idle_pods})
        expired_at = time.monotonic()
        servers.wait_until(lambda: system.controller_metrics().get(REAPED, 0) - reaped0 >= EXPIRED,
                           timeout=300, interval=0.2, what=f"{EXPIRED} idle pods reaped")
        all_reaped_s = time.monotonic() - expired_at
        count2, sum2 = ticks()
        # The ticks since then: one reaped, the others found nothing.
        reaping_ms = 1000 * (sum2 - sum1) - quiet_ms * (count2 - count1 - 1)
        result = {"sessions": SESSIONS, "expired": EXPIRED, "quiet_tick_ms": quiet_ms,
                  "reaping_tick_ms": reaping_ms, "all_reaped_s": all_reaped_s,
                  "sessions_left": client.zcard("pod-router:activity"),
                  "controller_rss_mib": system.controller_rss_mib()}
        log(f"reaper on {system.backend_name}, {' '.join(qps_flags) or 'default rate'}: quiet tick {quiet_ms:.2f} ms, "
            f"tick with {EXPIRED} reaps {reaping_ms:.0f} ms, RSS {result['controller_rss_mib']:.0f} MiB")
        return result
    finally:
        system.stop_controller()


def run(system, log, backend="kube-sim"):
    system.stop_cluster()
    system.start_cluster(f"{backend}-reaper", start_delay=0, backend=backend)
    return {"default_rate": one_rate(system, [], log),
            "default_rate_flags": servers.controller_defaults("kube-qps", "kube-burst"),
            "raised_rate": one_rate(system, ["--kube-qps", "100", "--kube-burst", "200"], log),
            "raised_rate_flags": "--kube-qps 100 --kube-burst 200"}
