"""Creations in parallel (issue 17): a class of new users arriving together
is not created one API round trip after another. kube-sim answers in about a
millisecond, so a slow apiserver is made with its fault hook (`delay`: the
request is answered as usual, that much later); the controller runs with its
default --concurrent-creations (8) and rate limit (50 per second, burst 100)."""

import json
import time
import uuid

from conftest import USERS_NS, wait_until

PODS = f"/api/v1/namespaces/{USERS_NS}/pods"


def ready_times(stack, pods, started, timeout):
    """{pod: seconds from `started` until its session was seen ready}."""
    seen = {}

    def all_ready():
        for pod in pods:
            if pod not in seen and stack.session(pod).get("state") == "ready":
                seen[pod] = time.monotonic() - started
        return len(seen) == len(pods)
    wait_until(all_ready, timeout=timeout, interval=0.02,
               what=f"{len(pods)} sessions ready (ready so far: {len(seen)})")
    return seen


def refusals(stack):
    """How many pod creations kube-sim has answered with 429 so far."""
    log = (stack.kube.directory / "kube-sim.log").read_text(errors="replace")
    return log.count(f"POST {PODS} 429 ")


def test_creations_overlap_when_the_api_is_slow(stack):
    controller = stack.controller().start()
    # Each pod creation answered after 1 s: one at a time, 16 would take 16 s.
    stack.fault(delay=1.0, count=16, method="POST", path_prefix=PODS)
    started = time.monotonic()
    pods = [stack.request(f"slow-api-{n}") for n in range(16)]
    times = ready_times(stack, pods, started, timeout=30)
    # Eight workers: two rounds of 1 s, plus the pods' start. The bound is
    # far from both that (about 2.5 s) and one at a time (over 16 s).
    assert max(times.values()) < 8, sorted(times.values())
    assert sorted(stack.pods()) == sorted(pods)
    wait_until(lambda: controller.metric("pod_router_controller_events_acked_total") == 16,
               what="every event acked")
    assert controller.metric("pod_router_controller_pods_created_total") == 16
    assert controller.metric("pod_router_controller_pods_already_existed_total") == 0


def test_a_429_with_retry_after_holds_back_only_its_own_creations(stack):
    controller = stack.controller().start()
    # API Priority and Fairness turning two creations away, as a busy
    # apiserver does: 429 with Retry-After.
    stack.fault(status=429, count=2, method="POST", path_prefix=PODS, retry_after=3,
                reason="TooManyRequests", message="Too many requests, please try again later.")
    refused_before = refusals(stack)
    started = time.monotonic()
    pods = [stack.request(f"throttled-{n}") for n in range(10)]
    times = sorted(ready_times(stack, pods, started, timeout=30).values())
    # The two refused were created again only after their Retry-After...
    assert times[-2] >= 3, times
    # ...while the other workers went on creating the rest.
    assert times[-3] < 2.5, times
    assert sorted(stack.pods()) == sorted(pods)
    # Both 429s were answered (kube-sim's request log), and retried to success.
    assert refusals(stack) - refused_before == 2
    assert controller.metric("pod_router_controller_pods_created_total") == 10


def test_two_events_for_one_pod_are_never_in_two_workers_hands(stack):
    controller = stack.controller().start()
    stack.fault(delay=1.0, count=4, method="POST", path_prefix=PODS)
    pod = stack.request("twice")  # publishes the first event
    event = {"version": 1, "identity": "twice", "pod": pod, "request_id": uuid.uuid4().hex,
             "timestamp_ms": int(time.time() * 1000)}
    for _ in range(3):
        stack.publish(event, raw=json.dumps(event).encode())
    stack.wait_session(pod, "ready", timeout=20)
    wait_until(lambda: controller.metric("pod_router_controller_events_acked_total") == 4,
               what="all four deliveries acked")
    # One POST: the later deliveries waited for the first worker's and were
    # then settled with its outcome, instead of racing it to a 409.
    assert controller.metric("pod_router_controller_pods_created_total") == 1
    assert controller.metric("pod_router_controller_pods_already_existed_total") == 0
    assert list(stack.pods()) == [pod]
