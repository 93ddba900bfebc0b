"""The warm pool and spawn progress (issue 10) on the whole stack: a new
user's first request answered at once by a warm pool pod, with no creation
event, the pod then labelled with its user and the pool refilled; a cold
start shown stage by stage on the waiting page; a failed one ending in 502
with its reason.

The stack's nginx holds every request (pod_router_wait_mode hold). The
waiting page is served by a second gateway, started here from the stack's
own nginx.conf with `pod_router_wait_mode auto` and a short wait timeout: the
same module, Redis, broker and controller, as a second gateway replica
would be, so that the rest of the suite keeps its settings."""

import hashlib
import http.client
import re
import threading
import time
from contextlib import contextmanager

import pytest
import yaml

from conftest import REPO, USERS_NS, second_gateway
from polling import wait_until
from servers import ON_REAL_CLUSTER
from test_operations import BAD_TEMPLATE, restart_controller

FREE = "pod-router:pool:free"
POOL_LABEL = "pod-router.io/pool"
SESSION_LABEL = "pod-router.io/session"
IDENTITY_HASH_LABEL = "pod-router.io/identity-hash"
IDENTITY_ANNOTATION = "pod-router.io/identity"
POOL_NAME = re.compile(r"^user--pool-[0-9a-f]{12}$")
CONTROLLER = "pod_router_controller_"

# The order of a creation's stages before it is ready (docs/directives.md,
# pod_router_wait_timeout).
STAGES = ["queued", "creating", "scheduled", "pulling image", "starting"]
PAGE_STAGE = re.compile(r"<h1>Starting your environment&hellip; \(([^)<]*)\)</h1>")
# How long the slow template's readiness probe waits: the "starting" stage.
READINESS_DELAY = 3
PAGE_WAIT_TIMEOUT = 2.5  # seconds, the second gateway's pod_router_wait_timeout


# ------------------------------------------------------------------ helpers

def fetch(port, user, accept=None, timeout=40):
    """One request for `user` to the gateway on `port`: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": "local.gateway.com", "X-User-ID": user}
        if accept:
            headers["Accept"] = accept
        connection.request("GET", "/", headers=headers)
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read().decode(errors="replace")
    finally:
        connection.close()


def gateway_metrics(stack):
    """The stack nginx's metrics page as {series: value}."""
    status, _, body = stack.get(path="/pod-router/metrics")
    assert status == 200, body
    found = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def access_log_lines(stack, pod):
    """The stack nginx's access log lines of requests for `pod` (the user's
    own pod name, $pod_router_pod): [(status, route)]."""
    found = []
    for line in (stack.run_dir / "nginx" / "access.log").read_text().splitlines():
        match = re.search(r'" (\d{3}) \d+ route=(\S+) pod=(\S+) ', line)
        if match and match.group(3) == pod:
            found.append((int(match.group(1)), match.group(2)))
    return found


def free_pods(stack):
    return stack.redis(decode_responses=True).smembers(FREE)


def unclaimed_pool_pods(stack):
    """Pool pods no user is labelled on and not being deleted."""
    return {name: pod for name, pod in stack.pods().items()
            if (pod.metadata.labels or {}).get(POOL_LABEL) == "true"
            and SESSION_LABEL not in (pod.metadata.labels or {})
            and pod.metadata.deletion_timestamp is None}


def wait_pool(stack, size, timeout=30):
    """Until `size` pool pods are free (in Redis and by the leader's gauge,
    all of them unclaimed pods): their names."""
    def full():
        free = free_pods(stack)
        if (len(free) == size and set(unclaimed_pool_pods(stack)) == free
                and stack.controller_metrics().get(CONTROLLER + "pool_free") == size):
            return [free]  # truthy when empty too
        return None
    try:
        return wait_until(full, timeout=timeout, interval=0.1, what=f"{size} free pool pods")[0]
    except AssertionError as error:
        raise AssertionError(f"{error}: free {sorted(free_pods(stack))}, unclaimed pool pods "
                             f"{sorted(unclaimed_pool_pods(stack))}, pool_free gauge "
                             f"{stack.controller_metrics().get(CONTROLLER + 'pool_free')}") from None


@contextmanager
def controller_with(stack, **env):
    """The controller restarted with `env`, then as the stack started it,
    with no pool pod left free for the tests that follow."""
    restart_controller(stack, **env)
    try:
        yield
    finally:
        restart_controller(stack)
        wait_until(lambda: not free_pods(stack) and not unclaimed_pool_pods(stack), timeout=30,
                   interval=0.2, what="the pool emptied after the restore")


def slow_template(stack):
    """The shipped pod template whose readiness probe waits READINESS_DELAY
    seconds: the pod shows as "starting" that long."""
    pod = yaml.safe_load((REPO / "manifests" / "base" / "controller" / "pod-template.yaml").read_text())
    probe = pod["spec"]["containers"][0]["readinessProbe"]
    probe["initialDelaySeconds"] = READINESS_DELAY
    path = stack.run_dir / "slow-template.yaml"
    path.write_text(yaml.safe_dump(pod))
    return path


def poll_page(port, user, until, timeout=30, interval=0.1):
    """A browser on the waiting page, reloading every `interval` until
    until(status) holds: [(status, X-Pod-Router-Stage, stage on the page,
    headers, body)]."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        status, headers, body = fetch(port, user, accept="text/html,application/xhtml+xml")
        shown = PAGE_STAGE.search(body)
        seen.append((status, headers.get("X-Pod-Router-Stage"), shown.group(1) if shown else None,
                     headers, body))
        if until(status):
            return seen
        assert time.monotonic() < deadline, [entry[:3] for entry in seen]
        time.sleep(interval)


def distinct(stages):
    """`stages` without consecutive repeats."""
    return [stage for n, stage in enumerate(stages) if n == 0 or stages[n - 1] != stage]


# ------------------------------------------- a second gateway, in "auto" mode

@pytest.fixture(scope="module")
def page_gateway(stack):
    """A second gateway with the waiting page for browsers
    (pod_router_wait_mode auto), a short wait timeout for API clients and a
    quick re-check (so the 503's stage is recent). Its port."""
    def paging(conf):
        conf, changed = re.subn(r"pod_router_wait_timeout \S+;",
                                f"pod_router_wait_timeout {int(PAGE_WAIT_TIMEOUT * 1000)}ms;\n"
                                "            pod_router_wait_mode auto;", conf)
        assert changed == 1, conf
        conf, changed = re.subn(r"(\n\s*pod_router_touch_interval [^;]+;)",
                                r"\1\n    pod_router_recheck_interval 200ms;", conf)
        assert changed == 1, conf
        return conf

    with second_gateway(stack, "page", paging) as port:
        yield port


# --------------------------------------------------------------------- tests

def test_a_new_user_is_served_at_once_by_a_warm_pod_without_a_creation_event(stack):
    user = "warm-e2e-user"
    session = stack.pod_name(user)
    with controller_with(stack, POD_ROUTER_WARM_POOL_SIZE="2"):
        before = wait_pool(stack, 2)
        assert all(POOL_NAME.match(name) for name in before), before
        uids = {name: stack.pods()[name].metadata.uid for name in before}
        consumed = stack.controller_metrics()[CONTROLLER + "events_consumed_total"]
        gateway_before = gateway_metrics(stack)

        started = time.monotonic()
        status, headers, body = stack.get(user)
        took = time.monotonic() - started
        assert status == 200 and "It works!" in body, body
        claimed = headers["X-Pod-Name"]
        assert claimed in before, (claimed, before)
        # a claim is a Redis script and one proxied request; a cold start
        # takes kube-sim's schedule and start delays (0.5 s each) and more
        assert took < 1.0, took

        # the session is the pool pod's, ready at once
        record = stack.redis(decode_responses=True).hgetall(f"pod-router:session:{session}")
        assert (record["state"], record["origin"], record["pod"], record["identity"]) == (
            "ready", "pool", claimed, user), record

        # the gateway logged and counted a claim, measured on the warm path
        wait_until(lambda: access_log_lines(stack, session), timeout=5, what="the access log line")
        assert access_log_lines(stack, session) == [(200, "CLAIMED")]
        gateway_after = gateway_metrics(stack)

        def grew(series):
            return gateway_after.get(series, 0) - gateway_before.get(series, 0)
        assert grew("pod_router_pool_claims_total") == 1
        assert grew('pod_router_requests_total{outcome="claimed"}') == 1
        assert grew('pod_router_new_pod_seconds_count{path="warm"}') == 1
        assert grew('pod_router_new_pod_seconds_count{path="cold"}') == 0

        # the controller labels the pod with its user (a PATCH: same pod)
        def labelled():
            pod = stack.pods().get(claimed)
            return pod if pod and (pod.metadata.labels or {}).get(SESSION_LABEL) == session else None
        pod = wait_until(labelled, timeout=10, interval=0.1, what="the claimed pod labelled")
        assert pod.metadata.uid == uids[claimed]
        assert pod.metadata.labels[IDENTITY_HASH_LABEL] == hashlib.sha256(user.encode()).hexdigest()[:32]
        assert pod.metadata.annotations[IDENTITY_ANNOTATION] == user

        # and the pool is back to 2 free pods, one of them new
        after = wait_pool(stack, 2, timeout=20)
        assert claimed not in after and len(after - before) == 1
        controller = stack.controller_metrics()
        assert controller[CONTROLLER + "pool_claims_total"] == 1
        # no creation event: none consumed, no pod of the user's own name
        assert controller[CONTROLLER + "events_consumed_total"] == consumed
        assert session not in stack.pods()

        # the user's next request: the same pod, an ordinary hit
        status, headers, _ = stack.get(user)
        assert status == 200 and headers["X-Pod-Name"] == claimed
        wait_until(lambda: len(access_log_lines(stack, session)) == 2, timeout=5,
                   what="the second access log line")
        assert access_log_lines(stack, session)[1] == (200, "HIT")
        assert stack.controller_metrics()[CONTROLLER + "events_consumed_total"] == consumed

        # a free pool pod deleted by hand leaves the free set and is replaced
        [victim] = sorted(after - before)
        stack.core.delete_namespaced_pod(victim, USERS_NS)
        refilled = wait_pool(stack, 2, timeout=20)
        assert victim not in refilled


def test_a_cold_start_shows_its_stages_in_order_on_the_waiting_page(stack, page_gateway):
    browser, api_client = "stage-browser", "stage-api-client"
    with controller_with(stack, POD_ROUTER_POD_TEMPLATE=str(slow_template(stack))):
        held = {}

        def hold():
            started = time.monotonic()
            held["reply"] = fetch(page_gateway, api_client)
            held["took"] = time.monotonic() - started
        holder = threading.Thread(target=hold)
        holder.start()

        seen = poll_page(page_gateway, browser, until=lambda status: status != 503,
                         timeout=READINESS_DELAY + 30)
        holder.join(30)

        # the page until the pod is ready, then the pod itself
        status, _, _, headers, body = seen[-1]
        assert status == 200 and headers["X-Pod-Name"] == stack.pod_name(browser), (status, body)
        pages = seen[:-1]
        assert pages, "no waiting page before the pod was ready"
        for status, header, shown, headers, body in pages:
            assert status == 503 and headers["Content-Type"].startswith("text/html"), (status, body)
            assert header == shown and header in STAGES, (header, body)
            assert headers["Cache-Control"] == "no-store" and "Retry-After" in headers
        stages = distinct([header for _, header, _, _, _ in pages])
        # in order, never back; at least the kubelet's two stages seen
        assert stages == sorted(stages, key=STAGES.index), stages
        assert len(set(stages)) == len(stages), stages
        assert stages[0] == "queued", stages
        assert "pulling image" in stages and "starting" in stages, stages
        # kube-sim leaves the pod unbound that long; the real scheduler binds
        # it within milliseconds, so "creating" may come and go unseen there
        if not ON_REAL_CLUSTER and float(stack.env.get("POD_ROUTER_KUBE_SCHEDULE_DELAY", "0")) >= 0.5:
            assert "creating" in stages, stages

        # an API client (no text/html) is held, and at the wait timeout gets
        # 503 with the stage its creation had reached
        status, headers, body = held["reply"]
        assert status == 503, (status, body)
        assert PAGE_WAIT_TIMEOUT - 0.2 < held["took"] < PAGE_WAIT_TIMEOUT + 2, held["took"]
        assert "Retry-After" in headers
        assert headers.get("X-Pod-Router-Stage") in STAGES[1:], headers
        assert PAGE_STAGE.search(body) is None
        # its creation went on: a later request gets its pod
        wait_until(lambda: fetch(page_gateway, api_client)[0] == 200, timeout=READINESS_DELAY + 20,
                   interval=0.5, what="the API client's pod")


def test_a_failed_creation_ends_the_waiting_page_in_502_with_the_reason(stack, page_gateway):
    user = "stage-bad-image"
    template = stack.run_dir / "bad-template.yaml"
    template.write_text(BAD_TEMPLATE)
    with controller_with(stack, POD_ROUTER_POD_TEMPLATE=str(template)):
        seen = poll_page(page_gateway, user, until=lambda status: status != 503, timeout=20)
        status, header, _, headers, body = seen[-1]
        assert status == 502, (status, body)
        assert header == "failed", headers
        assert "ErrImagePull" in body or "ImagePullBackOff" in body, body
        stages = distinct([entry[1] for entry in seen[:-1]])
        assert stages and stages == sorted(stages, key=STAGES.index), stages
        # the stack's gateway (hold mode) says the same at once while the
        # failure is remembered
        status, headers, body = stack.get(user)
        assert status == 502 and headers.get("X-Pod-Router-Stage") == "failed", (status, headers)
        assert "ErrImagePull" in body or "ImagePullBackOff" in body, body

