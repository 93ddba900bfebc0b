"""Phase warm, the warm pool (issue 10): a new user's first request when the
controller keeps POOL_SIZE Ready, unassigned pods (--warm-pool-size). The
route script hands the user a free pool pod and the gateway proxies at once:
no creation event, no pod start.

A fresh kube-sim and a controller with the pool; once the pool is full
(SCARD <prefix>pool:free), USERS new users send their first request one
after another, one every INTERVAL_S (start to start: slower than the
controller refills, so the pool never runs dry), each timed to its first
byte as the cold phase times them. That is one run; the bench's --runs
runs, each starting from a full pool. Every request must have been a claim:
its session says origin "pool" and names a pool pod, the gateway's
pod_router_pool_claims_total grew by USERS and nothing else
(pod_router_pool_empty_total, cold starts), and kube-sim created no pod
under any of these users' own names. Anything else is a BenchError: a
figure that mixes cold starts into "warm" is not published.

Per run also: the fewest free pods seen before a request, and the refill
time, from the last response until the pool is full again."""

import asyncio
import statistics
import time
import urllib.request

from . import cold_start, servers
from .cold_start import WAIT
from .loadgen import first_request, percentile

POOL_SIZE, USERS, INTERVAL_S = 50, 40, 0.15
PREFIX = "pod-router:"
POOL_FREE = f"{PREFIX}pool:free"
FILL_TIMEOUT_S = 120


def module_metrics(port):
    """The gateway's metrics page as {series: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/pod-router/metrics", timeout=5) as reply:
        body = reply.read().decode()
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            values[series] = float(value)
    return values


CLAIMS = "pod_router_pool_claims_total"
EMPTY = "pod_router_pool_empty_total"
WARM_COUNT, WARM_SUM = 'pod_router_new_pod_seconds_count{path="warm"}', 'pod_router_new_pod_seconds_sum{path="warm"}'
COLD_COUNT = 'pod_router_new_pod_seconds_count{path="cold"}'
WARM_UNDER_5MS = 'pod_router_new_pod_seconds_bucket{path="warm",le="0.005"}'
SLOW_MS = 5
REFILL_COUNT = "pod_router_controller_pool_refill_seconds_count"
REFILL_SUM = "pod_router_controller_pool_refill_seconds_sum"


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def wait_full(client, what):
    servers.wait_until(lambda: client.scard(POOL_FREE) >= POOL_SIZE, timeout=FILL_TIMEOUT_S, interval=0.01,
                       what=what)


def one_run(system, client, port, run, log):
    before = module_metrics(port)
    samples, free_before, next_at = [], [], time.monotonic()
    for n in range(USERS):
        identity = f"warm-{run}-{n}"
        free_before.append(client.scard(POOL_FREE))
        response = asyncio.run(first_request(port, identity, 30))
        answered = time.monotonic()
        if response.status != 200:
            raise servers.BenchError(f"warm pool, {identity}: {response.status} {response.body[:200]!r}")
        session = client.hgetall(f"{PREFIX}session:user-{identity}")
        origin, pod = session.get(b"origin", b"").decode(), session.get(b"pod", b"").decode()
        if origin != "pool" or not pod.startswith("user--pool-"):
            raise servers.BenchError(f"warm pool, {identity}: not a claim (origin {origin!r}, pod {pod!r}, "
                                     f"{free_before[-1]} free pods before it)")
        samples.append(response.first_byte_s * 1000)
        next_at += INTERVAL_S
        time.sleep(max(0.0, next_at - time.monotonic()))
    after = module_metrics(port)
    delta = {name: after.get(name, 0) - before.get(name, 0)
             for name in (CLAIMS, EMPTY, WARM_COUNT, WARM_SUM, WARM_UNDER_5MS, COLD_COUNT)}
    if delta[CLAIMS] != USERS or delta[WARM_COUNT] != USERS or delta[EMPTY] or delta[COLD_COUNT]:
        raise servers.BenchError(f"warm pool, run {run}: the gateway counted {delta[CLAIMS]:.0f} claims, "
                                 f"{delta[EMPTY]:.0f} empty pool, {delta[COLD_COUNT]:.0f} cold starts "
                                 f"for {USERS} new users")
    wait_full(client, f"the pool full again after run {run}")
    refill_s = time.monotonic() - answered
    result = {"first_byte_ms": {"p50": percentile(samples, 0.50), "p99": percentile(samples, 0.99),
                                "min": min(samples), "max": max(samples)},
              "samples_ms": samples, "claims": int(delta[CLAIMS]), "fewest_free": min(free_before),
              "refill_s": refill_s, "gateway_wait_ms_mean": 1000 * delta[WARM_SUM] / delta[WARM_COUNT],
              # where a slow request's time went: the client saw more than
              # SLOW_MS; did the gateway, from taking the request up to
              # proxying it (its histogram's 5 ms bucket)?
              "slow": sum(1 for sample in samples if sample > SLOW_MS),
              "slow_in_gateway": int(delta[WARM_COUNT] - delta[WARM_UNDER_5MS])}
    log(f"warm pool, run {run}: first byte p50 {result['first_byte_ms']['p50']:.2f} ms, p99 "
        f"{result['first_byte_ms']['p99']:.2f} ms; {result['claims']} claims, fewest free {result['fewest_free']}, "
        f"full again after {refill_s:.1f} s")
    return result


def run(system, settings, log, controller_flags=()):
    system.stop_cluster()
    client = system.redis_client()
    client.flushall()
    system.start_cluster("kube-sim-warm", settings.start_delay, settings.start_jitter)
    system.start_controller(*controller_flags, "--warm-pool-size", str(POOL_SIZE))
    nginx = cold_start.gateway(system, "warm", WAIT, settings.workers)
    try:
        started = time.monotonic()
        wait_full(client, f"the warm pool's {POOL_SIZE} pods")
        fill_s = time.monotonic() - started
        log(f"warm pool: {POOL_SIZE} pods free after {fill_s:.1f} s")
        controller_before = system.controller_metrics()
        runs = [one_run(system, client, nginx.port, run, log) for run in range(settings.runs)]
        controller_after = system.controller_metrics()
        cold = sorted(pod for pod, events in system.pod_timeline().items()
                      if pod.startswith("user-warm-") and events.get("created"))
        if cold:
            raise servers.BenchError(f"warm pool: kube-sim created pods for {len(cold)} of the users measured "
                                     f"(cold starts): {', '.join(cold[:5])}")
        refills = controller_after.get(REFILL_COUNT, 0) - controller_before.get(REFILL_COUNT, 0)
        refill_sum = controller_after.get(REFILL_SUM, 0) - controller_before.get(REFILL_SUM, 0)
        every = [sample for one in runs for sample in one["samples_ms"]]
        return {
            "pool_size": POOL_SIZE, "users": USERS, "interval_s": INTERVAL_S, "runs": runs,
            "controller_flags": " ".join([*controller_flags, "--warm-pool-size", str(POOL_SIZE)]),
            "initial_fill_s": fill_s,
            "p50_ms": spread([one["first_byte_ms"]["p50"] for one in runs]),
            "p99_ms": spread([one["first_byte_ms"]["p99"] for one in runs]),
            "all_samples_ms": {"count": len(every), "p50": percentile(every, 0.50), "p99": percentile(every, 0.99),
                               "max": max(every)},
            "refill_s": spread([one["refill_s"] for one in runs]),
            "fewest_free": min(one["fewest_free"] for one in runs),
            "slow_ms": SLOW_MS, "slow": sum(one["slow"] for one in runs),
            "slow_in_gateway": sum(one["slow_in_gateway"] for one in runs),
            "gateway_wait_ms_mean": statistics.median(one["gateway_wait_ms_mean"] for one in runs),
            # the controller's own figure: a pool pod's creation to its offer
            "pod_refill_s_mean": refill_sum / refills if refills else None,
        }
    finally:
        system.stop_gateway(nginx)
        system.stop_cluster()
