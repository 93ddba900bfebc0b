"""Phase 1, the hot path: requests of users whose pod is ready, through each
gateway in turn, to the same backend pod.

  a  static   plain proxy_pass to a static upstream (the limit)
  b  cached   this module, pod_router_cache_ttl on
  c  module   this module, a Redis lookup on every request
  d  lua      access_by_lua + lua-resty-redis + balancer_by_lua
  e  seed     the seed's FastAPI gateway (uvicorn, httpx)

Every gateway runs at once, each with the same worker count, all reading
the same Redis; wrk drives one at a time. The runs are interleaved (run 1
of every case, then run 2, ...) so that a drift of the machine spreads
over all cases instead of landing on one. Each run also divides the CPU
time of the gateway's workers, the backend and Redis (and wrk's own) by the
requests served."""

import statistics
import time
import urllib.request

from . import servers
from .loadgen import wrk
from .profile import cost_per_request
from .system import write_ready_sessions

CASES = (("a", "static", "static proxy_pass (limit)"),
         ("b", "cached", "module, cache on"),
         ("c", "module", "module, cache off"),
         ("d", "lua", "access_by_lua + lua-resty-redis"),
         ("e", "seed", "seed: FastAPI + httpx"))

POD_ADDRESS = "127.2.0.10"
CACHE_TTL = "2s"  # docs/directives.md: "a second or two"


def seed_sessions(client, users, backend_port):
    """`users` ready sessions, bench-0 .. bench-<n-1>, all on the backend pod."""
    write_ready_sessions(client, ((f"user-bench-{n}", f"bench-{n}", POD_ADDRESS) for n in range(users)),
                         backend_port)


def check_gateway(gateway, users):
    """A request through the gateway must reach the backend pod: a case that
    answers with an error would otherwise be measured as fast."""
    for identity in ("bench-0", f"bench-{users - 1}"):
        request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}/", headers={"X-User-ID": identity})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        if response.status != 200 or b"It works!" not in body:
            raise servers.BenchError(f"{gateway.name}: {response.status} {body[:200]!r}")


def summarize(runs):
    def spread(key):
        values = [run[key] for run in runs]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}
    summary = {"rps": spread("rps"), "p50_ms": spread("p50_ms"), "p99_ms": spread("p99_ms"),
               "errors": sum(run["errors"] for run in runs), "runs": runs}
    if all("cpu_us" in run for run in runs):
        # CPU time per request is steadier than requests/s on a shared
        # machine: it does not move when a neighbour takes a core away.
        summary["cpu_us"] = {role: statistics.median(run["cpu_us"][role] for run in runs)
                             for role in runs[0]["cpu_us"]}
    return summary


def start_gateways(system, workers):
    """The five cases, each on a port of its own, all at once."""
    run_dir, nginx, port = system.run_dir, servers.Nginx, servers.free_port
    pod = f"{POD_ADDRESS}:{system.backend_port}"
    module = dict(modules=[servers.MODULE], REDIS_PORT=system.redis.port, AMQP_PORT=system.amqp_port, EXTRA="")
    return {
        "static": system.start_gateway(nginx, run_dir, "static", "static.conf.in", port(), workers, POD=pod),
        "cached": system.start_gateway(nginx, run_dir, "cached", "module.conf.in", port(), workers,
                                       CACHE_TTL=CACHE_TTL, **module),
        "module": system.start_gateway(nginx, run_dir, "module", "module.conf.in", port(), workers,
                                       CACHE_TTL=0, **module),
        "lua": system.start_gateway(nginx, run_dir, "lua", "lua.conf.in", port(), workers,
                                    modules=servers.LUA_MODULES, REDIS_PORT=system.redis.port),
        "seed": system.start_gateway(servers.SeedGateway, run_dir, port(), workers, system.redis.port),
    }


def run(system, settings, log):
    """Measures every case for 1 user and for `settings.users` users; returns
    {users: {case: summary}} and the gateways, left running for a profile."""
    client = system.redis_client()
    seed_sessions(client, settings.users, system.backend_port)
    gateways = start_gateways(system, settings.workers)
    results = {}
    for users in (1, settings.users):
        for gateway in gateways.values():
            check_gateway(gateway, users)
            wrk(gateway.port, users, settings.warmup, settings.connections, settings.threads)
        runs = {name: [] for _, name, _ in CASES}
        for attempt in range(settings.runs):
            for _, name, _ in CASES:
                gateway = gateways[name]
                groups = {"gateway": gateway.worker_pids(), "backend": system.backend.worker_pids(),
                          "redis": [system.redis.process.pid]}
                result, costs = cost_per_request(groups, lambda: wrk(
                    gateway.port, users, settings.seconds, settings.connections, settings.threads))
                result["cpu_us"] = costs
                runs[name].append(result)
                log(f"hot path, {users} user(s), {name}, run {attempt + 1}: {result['rps']:.0f} req/s, "
                    f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, errors {result['errors']}")
                time.sleep(0.5)
        results[str(users)] = {name: summarize(runs[name]) for name in runs}
    return results, gateways
