"""Phase 3, storms of new users, while 10 existing users keep using their
pods (a prober in its own process, at a fixed rate):

  arrivals   STORM_USERS new users, their first requests spread evenly over
             STORM_SECONDS (open loop: one does not wait for another)
  herd       HERD_USERS users x HERD_REQUESTS concurrent first requests each

For each: errors, pods created more than once, the time until every request
was served, and the existing users' p99 during the storm against before it."""

import asyncio
import time

from . import cold_start, hot_path, servers
from .cold_start import WAIT
from .loadgen import Prober, first_request, percentile, storm
from .profile import profile_while

STORM_USERS, STORM_SECONDS = 1000, 10
HERD_USERS, HERD_REQUESTS = 20, 50
EXISTING_USERS, PROBE_RATE, BASELINE_SECONDS = 10, 100, 20


def measure(system, port, name, schedule, log):
    identities = sorted({identity for identity, _ in schedule})
    created_before = system.controller_metrics().get("pod_router_controller_pods_created_total", 0)
    prober = Prober(port, [f"existing-{n}" for n in range(EXISTING_USERS)], PROBE_RATE)
    time.sleep(1)
    # Where the cores went meanwhile, for the page if a target is missed.
    outcomes, profile = profile_while(system.run_dir / f"perf-storm-{name}.data", lambda: storm(port, schedule),
                                      sorts=(("comm", None), ("dso,sym", "nginx")))
    during = prober.stop()
    errors = [outcome for outcome in outcomes if outcome["outcome"] != 200]
    timeline = system.pod_timeline()
    creations = {identity: len(timeline.get(f"user-{identity}", {}).get("created", [])) for identity in identities}
    result = {
        "requests": len(outcomes), "users": len(identities), "errors": len(errors),
        "error_kinds": sorted({str(outcome["outcome"]) for outcome in errors}),
        "pods_created": sum(creations.values()),
        "duplicate_pods": sum(count - 1 for count in creations.values() if count > 1),
        "users_without_pod": sum(1 for count in creations.values() if count == 0),
        "controller_pods_created": system.controller_metrics().get(
            "pod_router_controller_pods_created_total", 0) - created_before,
        "all_served_s": max(outcome["done_s"] for outcome in outcomes),
        # from a first request's start to its response's end
        "wait_s": {"p50": percentile([o["wait_s"] for o in outcomes], 0.5),
                   "p99": percentile([o["wait_s"] for o in outcomes], 0.99)},
        "existing_users_during": during,
        "profile": profile,
    }
    log(f"storm {name}: {result['requests']} requests, {result['errors']} errors, "
        f"{result['duplicate_pods']} duplicate pods, all served in {result['all_served_s']:.1f} s, "
        f"existing users' p99 {during['p99_ms']:.1f} ms")
    return result


def static_floor(system, schedule, settings, log):
    """The same herd against plain nginx (case a of the hot path, a static
    upstream to the backend): what a thousand connections arriving at once
    cost any nginx on this machine, before pod-router does anything."""
    nginx = system.start_gateway(servers.Nginx, system.run_dir, "storm-static", "static.conf.in",
                                 servers.free_port(), settings.workers,
                                 POD=f"{hot_path.POD_ADDRESS}:{system.backend_port}")
    try:
        identities = [f"existing-{n}" for n in range(EXISTING_USERS)]
        baseline = Prober(nginx.port, identities, PROBE_RATE)
        time.sleep(BASELINE_SECONDS / 2)
        before = baseline.stop()
        prober = Prober(nginx.port, identities, PROBE_RATE)
        time.sleep(1)
        outcomes = storm(nginx.port, schedule)
        during = prober.stop()
        result = {"existing_users_before": before, "existing_users_during": during,
                  "errors": sum(1 for outcome in outcomes if outcome["outcome"] != 200)}
        log(f"storm herd against plain nginx: existing users' p99 {before['p99_ms']:.1f} ms before, "
            f"{during['p99_ms']:.1f} ms during")
        return result
    finally:
        system.stop_gateway(nginx)


def run(system, settings, log):
    nginx = cold_start.gateway(system, "storm", WAIT, settings.workers)
    try:
        for n in range(EXISTING_USERS):
            response = asyncio.run(first_request(nginx.port, f"existing-{n}", 200))
            if response.status != 200:
                raise servers.BenchError(f"existing-{n}: {response.status} {response.body[:200]!r}")
        baseline = Prober(nginx.port, [f"existing-{n}" for n in range(EXISTING_USERS)], PROBE_RATE)
        time.sleep(BASELINE_SECONDS)
        results = {"existing_users_before": baseline.stop()}
        log(f"storm: existing users' p99 without a storm {results['existing_users_before']['p99_ms']:.1f} ms")
        arrivals = [(f"arrival-{n}", n * STORM_SECONDS / STORM_USERS) for n in range(STORM_USERS)]
        results["arrivals"] = measure(system, nginx.port, "arrivals", arrivals, log)
        herd = [(f"herd-{user}", 0.0) for user in range(HERD_USERS) for _ in range(HERD_REQUESTS)]
        results["herd"] = measure(system, nginx.port, "herd", herd, log)
        results["herd_static_floor"] = static_floor(system, herd, settings, log)
        results["settings"] = {"arrivals": f"{STORM_USERS} users over {STORM_SECONDS} s",
                               "herd": f"{HERD_USERS} users x {HERD_REQUESTS} concurrent requests",
                               "existing": f"{EXISTING_USERS} users, {PROBE_RATE} requests/s in all"}
        return results
    finally:
        system.stop_gateway(nginx)
