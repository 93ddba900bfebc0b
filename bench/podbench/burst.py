"""Phase burst, a class at once (issue 17): USERS new users whose first
requests arrive within ARRIVAL_SECONDS, evenly spread (open loop), as when a
class or a workshop starts, each held by the gateway until its own pod is
ready. With the controller's default settings (no flags), and once more with
the defaults it had before issue 17 (OLD_DEFAULTS), for comparison.

A fresh kube-sim for each, with `make run`'s pod start (START_DELAY_S, no
jitter), so that the figures read like the issue's. Per run: how many were
served (200), the errors, pods created per user (kube-sim's timeline: one
each), each user's wait from sending its request to the end of the
response, and when the last one was served."""

from . import cold_start, servers
from .loadgen import percentile, storm

USERS, ARRIVAL_SECONDS = 300, 10
START_DELAY_S = 1.0  # scripts/stack.sh's POD_ROUTER_KUBE_START_DELAY
WAIT = "pod_router_wait_timeout 180s;"
OLD_DEFAULTS = ["--kube-qps", "5", "--kube-burst", "10", "--concurrent-creations", "1", "--prefetch", "50"]
DEFAULTS_SHOWN = ("kube-qps", "kube-burst", "concurrent-creations", "prefetch")


def one_run(system, name, flags, settings, log):
    system.stop_cluster()
    system.redis_client().flushall()
    system.start_cluster(f"kube-sim-{name}", START_DELAY_S)
    system.start_controller(*flags)
    nginx = cold_start.gateway(system, name, WAIT, settings.workers)
    try:
        identities = [f"{name}-{n}" for n in range(USERS)]
        schedule = [(identity, n * ARRIVAL_SECONDS / USERS) for n, identity in enumerate(identities)]
        outcomes = storm(nginx.port, schedule)
    finally:
        system.stop_gateway(nginx)
    timeline = system.pod_timeline()
    creations = [len(timeline.get(f"user-{identity}", {}).get("created", [])) for identity in identities]
    served = [outcome for outcome in outcomes if outcome["outcome"] == 200]
    errors = [outcome for outcome in outcomes if outcome["outcome"] != 200]
    waits = [outcome["wait_s"] for outcome in outcomes]
    result = {
        "users": USERS, "served": len(served), "errors": len(errors),
        "error_kinds": sorted({str(outcome["outcome"]) for outcome in errors}),
        "pods_created": sum(creations), "duplicate_pods": sum(count - 1 for count in creations if count > 1),
        "users_without_pod": sum(1 for count in creations if count == 0),
        # from a first request's start to its response's end
        "wait_s": {"p50": percentile(waits, 0.50), "p90": percentile(waits, 0.90),
                   "p99": percentile(waits, 0.99), "last": max(waits)},
        "all_served_s": max(outcome["done_s"] for outcome in outcomes),
    }
    log(f"burst, {name}: {result['served']} of {USERS} served, wait p50 {result['wait_s']['p50']:.2f} s, "
        f"p99 {result['wait_s']['p99']:.2f} s, last {result['wait_s']['last']:.2f} s, "
        f"all served after {result['all_served_s']:.1f} s")
    return result


def run(system, settings, log):
    results = {"settings": f"{USERS} new users, first requests evenly over {ARRIVAL_SECONDS} s",
               "start_delay_s": START_DELAY_S, "defaults": servers.controller_defaults(*DEFAULTS_SHOWN),
               "old_defaults": " ".join(OLD_DEFAULTS)}
    results["default"] = one_run(system, "burst", [], settings, log)
    results["old"] = one_run(system, "burst-old", OLD_DEFAULTS, settings, log)
    system.stop_cluster()
    return results
