"""The seed's "How to Test", as written (127.0.0.1:PORT in place of the
minikube address), and users kept apart under concurrent traffic."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import IDLE_TIMEOUT
from polling import wait_until


def test_the_seed_flows_first_request_held_then_instant_then_reaped(stack):
    error_log = stack.run_dir / "nginx" / "error.log"
    logged_before = len(error_log.read_text())
    # 1. the first request is held while demo-user-1's own pod starts
    started = time.monotonic()
    status, headers, body = stack.get("demo-user-1")
    first = time.monotonic() - started
    assert status == 200, body
    assert "It works!" in body
    assert headers["X-Pod-Name"] == "user-demo-user-1"
    pods = stack.pods()
    assert "user-demo-user-1" in pods
    uid = pods["user-demo-user-1"].metadata.uid

    # 2. the same again: straight to the same pod, no new creation
    started = time.monotonic()
    status, headers, body = stack.get("demo-user-1")
    again = time.monotonic() - started
    assert status == 200 and headers["X-Pod-Name"] == "user-demo-user-1"
    assert stack.pods()["user-demo-user-1"].metadata.uid == uid
    assert again < first  # no pod start the second time
    assert "[error]" not in error_log.read_text()[logged_before:]

    # 3. after the idle timeout: the controller logs the reap, the pod is gone,
    #    and the next request gets a new pod
    wait_until(lambda: stack.gone_or_going("user-demo-user-1"),
               timeout=IDLE_TIMEOUT + 10, what="the idle pod reaped")

    # The controller logs the reap once the delete is answered and the
    # session closed: a moment after the pod shows as deleted.
    def reaped():
        return any(json.loads(line).get("pod") == "user-demo-user-1"
                   for line in stack.log("controller").splitlines()
                   if '"reaped an idle pod"' in line)
    try:
        wait_until(reaped, timeout=5, what="the reap in the controller's log")
    except AssertionError as error:
        lines = [line for line in stack.log("controller").splitlines() if "user-demo-user-1" in line]
        raise AssertionError("\n".join([str(error), *lines])) from None
    status, headers, body = stack.get("demo-user-1")
    assert status == 200 and "It works!" in body
    assert stack.pods()["user-demo-user-1"].metadata.uid != uid


def test_two_users_get_two_pods_and_only_their_own(stack):
    for user in ("alice", "bob"):
        status, headers, body = stack.get(user)
        assert status == 200 and headers["X-Pod-Name"] == stack.pod_name(user)
    assert stack.pod_name("alice") != stack.pod_name("bob")

    # concurrent mixed traffic: every answer from the asker's own pod
    users = ["alice", "bob", "carol", "dave"]
    mistakes = []
    lock = threading.Lock()

    def ask(n):
        user = users[n % len(users)]
        status, headers, body = stack.get(user)
        expected = stack_names[user]
        if status != 200 or headers.get("X-Pod-Name") != expected or expected not in body:
            with lock:
                mistakes.append((user, status, headers.get("X-Pod-Name")))

    stack_names = {user: stack.pod_name(user) for user in users}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(ask, range(200)))
    assert mistakes == []


def test_fifty_concurrent_first_requests_make_one_pod(stack):
    user = "storm-user"
    barrier = threading.Barrier(50)

    def first_request(_):
        barrier.wait(timeout=10)
        return stack.get(user)

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(first_request, range(50)))
    assert [status for status, _, _ in answers] == [200] * 50
    assert {headers["X-Pod-Name"] for _, headers, _ in answers} == {stack.pod_name(user)}
    assert [name for name in stack.pods() if name.startswith("user-storm")] == [stack.pod_name(user)]
    metrics = stack.controller_metrics()
    assert metrics.get("pod_router_controller_pods_created_total", 0) >= 1
