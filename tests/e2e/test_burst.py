"""A class of new users at once (issue 17): 300 users whose first requests
arrive within 10 s, as when a class or a workshop starts, are all served from
their own pods, the last of them long before a user would give up.

The controller runs with its defaults (the stack passes no --kube-qps,
--kube-burst or --concurrent-creations). The requests go through a second
gateway started from the stack's own nginx.conf with a wait timeout of 120 s,
so that a slow controller shows as a late answer, which the bound below
catches, rather than as 503s; the rest of the suite keeps its settings."""

import asyncio
import re
import subprocess
import time

import pytest

from conftest import REPO, second_gateway
from polling import wait_until

USERS = 300
ARRIVAL_SECONDS = 10
WAIT_TIMEOUT = 120  # s, the second gateway's pod_router_wait_timeout
# The bound on the last user's wait. The old defaults (5 creations a second,
# a burst of 10) cannot meet it whatever the machine: user n arrives at
# n / 30 s and its pod cannot be created before (n - 10) / 5 s, so the last
# one waits at least 47.8 s. A controller that keeps up with 30 new users a
# second serves each in about its pod's start (about 1 s here).
LAST_WAIT_BOUND = 30
PREFIX = "burst"


@pytest.fixture(scope="module")
def patient_gateway(stack):
    """A second gateway with a wait timeout long enough for any controller
    to answer. Its port."""
    def patient(conf):
        conf, changed = re.subn(r"pod_router_wait_timeout \S+;", f"pod_router_wait_timeout {WAIT_TIMEOUT}s;", conf)
        assert changed == 1, conf
        return conf

    with second_gateway(stack, "burst", patient) as port:
        yield port


async def first_request(port, user, delay):
    """`user`'s first request, sent `delay` s after the start, held by the
    gateway until the pod is ready (no Accept: text/html): (status, body,
    seconds from sending to the end of the response)."""
    await asyncio.sleep(delay)
    sent = time.monotonic()
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(f"GET / HTTP/1.1\r\nHost: local.gateway.com\r\nX-User-ID: {user}\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), WAIT_TIMEOUT + 30)
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 else 0
    return status, response.partition(b"\r\n\r\n")[2].decode(errors="replace"), time.monotonic() - sent


async def arrivals(port, users):
    """Every user's first request, spread evenly over ARRIVAL_SECONDS (open
    loop: nobody waits for anybody else)."""
    return await asyncio.gather(*(first_request(port, user, n * ARRIVAL_SECONDS / len(users))
                                  for n, user in enumerate(users)), return_exceptions=True)


def pod_names(stack, users):
    controller = stack.env.get("POD_ROUTER_CONTROLLER", str(REPO / "build" / "controller" / "pod-router-controller"))
    done = subprocess.run([controller, "pod-name", *users], capture_output=True, text=True, check=True)
    names = done.stdout.split()
    assert len(names) == len(users), done.stdout
    return names


def test_300_new_users_within_10_s_are_all_served_from_their_own_pods(stack, patient_gateway):
    users = [f"{PREFIX}-{n}" for n in range(USERS)]
    pods = pod_names(stack, users)
    assert not any(name in stack.pods() for name in pods)
    created_before = stack.controller_metrics().get("pod_router_controller_pods_created_total", 0)

    outcomes = asyncio.run(arrivals(patient_gateway, users))

    failures = [(user, outcome if isinstance(outcome, BaseException) else outcome[0])
                for user, outcome in zip(users, outcomes)
                if isinstance(outcome, BaseException) or outcome[0] != 200]
    assert not failures, f"{len(failures)} of {USERS} not served, first: {failures[:5]}"
    strangers = [(user, pod) for user, pod, (_, body, _) in zip(users, pods, outcomes)
                 if f"pod: {pod}<" not in body]
    assert not strangers, f"served by another pod: {strangers[:5]}"
    waits = sorted(wait for _, _, wait in outcomes)
    summary = (f"wait p50 {waits[len(waits) // 2]:.2f} s, p99 {waits[int(0.99 * len(waits)) - 1]:.2f} s, "
               f"last {waits[-1]:.2f} s")
    assert waits[-1] < LAST_WAIT_BOUND, summary
    # One pod each: no user's pod created twice.
    created = stack.controller_metrics()["pod_router_controller_pods_created_total"] - created_before
    assert created == USERS, summary

    # Leave the stack as found: the idle timeout reaps the class's pods.
    wait_until(lambda: not any(name.startswith(f"user-{PREFIX}-") for name in stack.pods()),
               timeout=120, interval=1, what="the class's pods reaped")
