"""Phase 2, cold starts: a new user's first request, one user at a time,
timed to the response's first byte, on kube-sim and on the real control
plane. The pod timeline (kube-sim's own, or the bench's watch of the real
API server) gives each pod's own readiness time (API create to Ready);
what remains is the gateway's and the controller's overhead:

    overhead = first byte - (pod Ready - pod created)

once with waiting requests woken by Redis pub/sub (the default) and once
with pod_router_subscribe off, so that they find out by polling every
POLL_INTERVAL: what pub/sub buys."""

import asyncio

from . import servers
from .loadgen import first_request, percentile

POLL_INTERVAL = "500ms"
WAIT = "pod_router_wait_timeout 180s;"
MODES = (("notify", WAIT),
         ("poll", f"{WAIT}\n    pod_router_subscribe off;\n    pod_router_recheck_interval {POLL_INTERVAL};"))


def gateway(system, name, extra, workers):
    return system.start_gateway(servers.Nginx, system.run_dir, name, "module.conf.in", servers.free_port(),
                                workers, modules=[servers.MODULE], REDIS_PORT=system.redis.port,
                                AMQP_PORT=system.amqp_port, CACHE_TTL=0, EXTRA=extra)


def stats(values):
    return {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99),
            "min": min(values), "max": max(values)}


def measure(system, port, prefix, users, log, token=None):
    """`users` new users' first requests through the gateway on `port`, one
    after another, against `system`'s pod timeline (its pod_timeline() and
    backend_name); `token(identity)` signs identities for a gateway that
    takes signed ones."""
    samples = []
    for n in range(users):
        identity = f"{prefix}-{n}"
        response = asyncio.run(first_request(port, identity, 200, token(identity) if token else None))
        if response.status != 200:
            raise servers.BenchError(f"cold start of {identity}: {response.status} {response.body[:200]!r}")
        samples.append((f"user-{identity}", response.first_byte_s * 1000))
    # The real API server's timeline comes from the bench's own watch, which
    # may show the last pod Ready a moment after the gateway served it.
    def complete():
        timeline = system.pod_timeline()
        return all(timeline.get(pod, {}).get("created") and timeline[pod].get("ready")
                   for pod, _ in samples)
    try:
        servers.wait_until(complete, timeout=10, interval=0.1, what="every pod's readiness in the pod timeline")
    except AssertionError:
        pass  # reported below, pod by pod
    timeline = system.pod_timeline()
    first_byte, readiness, overhead = [], [], []
    for pod, first_byte_ms in samples:
        events = timeline.get(pod, {})
        if not events.get("created") or not events.get("ready"):
            raise servers.BenchError(f"the pod timeline has no creation and readiness for {pod}: {events}")
        created = events["created"][0]
        ready = min(at for at in events["ready"] if at >= created)
        first_byte.append(first_byte_ms)
        readiness.append(ready - created)
        overhead.append(first_byte_ms - (ready - created))
    result = {"users": users, "first_byte_ms": stats(first_byte), "pod_readiness_ms": stats(readiness),
              "overhead_ms": stats(overhead)}
    log(f"cold start on {system.backend_name}, {prefix}: first byte p50 {result['first_byte_ms']['p50']:.1f} ms, overhead p50 "
        f"{result['overhead_ms']['p50']:.1f} ms, p99 {result['overhead_ms']['p99']:.1f} ms")
    return result


def run(system, settings, log):
    results = {"poll_interval": POLL_INTERVAL}
    for mode, extra in MODES:
        nginx = gateway(system, f"cold-{mode}", extra, settings.workers)
        try:
            results[mode] = measure(system, nginx.port, f"cold-{mode}", settings.cold_users, log)
        finally:
            system.stop_gateway(nginx)
    return results
