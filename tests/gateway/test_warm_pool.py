"""Warm pool and spawn progress (issue 10), end to end in the packaged nginx:
a new user takes a free pool pod at once, without a creation event; with
the pool empty a new user takes the cold path; the metrics tell the two
apart; a waiting user is told how far the creation got (the page, the
X-Pod-Router-Stage header), and a failed one why.

The pool is seeded straight into Redis, as the controller's pool_ready
script leaves it: the pod in <prefix>pool:free, its address in
<prefix>pool:address, the pool size in <prefix>pool:target."""

import concurrent.futures
import time

from conftest import KEY_PREFIX, POD_NETWORK
from polling import wait_until
from test_gateway import get, metrics, serve_pod

POOL_FREE = f"{KEY_PREFIX}pool:free"
POOL_ADDRESS = f"{KEY_PREFIX}pool:address"
POOL_CLAIMS = f"{KEY_PREFIX}pool:claims"
POOL_CLAIMED = f"{KEY_PREFIX}pool:claimed"
POOL_TARGET = f"{KEY_PREFIX}pool:target"


def seed_pool_pod(driver, pods, name, last_octet):
    """A Ready pool pod, offered to new users."""
    ip = f"{POD_NETWORK}.{last_octet}"
    if name not in pods.pods():
        pods.add_pod(name, ip, 80)
    driver.redis.sadd(POOL_FREE, name)
    driver.redis.hset(POOL_ADDRESS, name, f"{ip} 80")
    driver.redis.set(POOL_TARGET, 1)
    return ip


def hold_pending(driver, identity, stage):
    """A creation under way elsewhere: the session pending at `stage`, the
    lock held by another request, so the route script answers pending."""
    pod = f"user-{identity}"
    driver.redis.hset(f"{KEY_PREFIX}session:{pod}", mapping={
        "identity": identity, "pod": pod, "origin": "cold", "state": "pending", "stage": stage})
    driver.redis.set(f"{KEY_PREFIX}creating:{pod}", "another-request", px=60000)


def values(gateway):
    """The metrics page as {series: value}."""
    found = {}
    for line in metrics(gateway).splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def log_of(gateway, pod, count):
    """The access log lines of requests for `pod` (not the metrics'), once
    there are `count`: nginx logs a request after answering it."""
    def lines():
        found = [line.split() for line in gateway.access_log() if f" {pod} " in line]
        return found if len(found) >= count else None
    return wait_until(lines, timeout=5, what=f"{count} log lines of {pod}")


def test_a_new_user_takes_a_warm_pod_and_the_next_one_a_cold_start(gateway, redis_server, rabbitmq,
                                                                   driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    pool_ip = seed_pool_pod(driver, pods, "user--pool-a1", 200)

    started = time.monotonic()
    status, headers, _ = get(gateway, "warm-ann")
    took = time.monotonic() - started
    assert status == 200 and headers["X-Pod-Name"] == "user--pool-a1"

    # The session is the pool pod's, ready at once; the pool gave it away.
    session = driver.redis.hgetall(f"{KEY_PREFIX}session:user-warm-ann")
    assert {field: session.get(field) for field in ("identity", "state", "origin", "pod", "ip", "port")} == {
        "identity": "warm-ann", "state": "ready", "origin": "pool", "pod": "user--pool-a1",
        "ip": pool_ip, "port": "80"}
    assert driver.redis.smembers(POOL_FREE) == set()
    assert driver.redis.hgetall(POOL_ADDRESS) == {}
    assert driver.redis.lrange(POOL_CLAIMS, 0, -1) == ["user--pool-a1 user-warm-ann"]
    assert driver.redis.hgetall(POOL_CLAIMED) == {"user--pool-a1": "user-warm-ann"}
    assert driver.events(timeout=0.5) == []  # nothing for the controller to create
    assert log_of(gateway, "user-warm-ann", 1) == [["CLAIMED", "user-warm-ann", "200"]]
    assert gateway.error_log().count(
        'pod_router: "user-warm-ann" claimed the warm pod "user--pool-a1"') == 1

    found = values(gateway)
    assert found["pod_router_pool_claims_total"] == 1
    assert found["pod_router_pool_empty_total"] == 0
    assert found['pod_router_requests_total{outcome="claimed"}'] == 1
    assert found['pod_router_new_pod_seconds_count{path="warm"}'] == 1
    assert found['pod_router_new_pod_seconds_count{path="cold"}'] == 0
    # measured inside nginx, so within what the client saw
    assert found['pod_router_new_pod_seconds_sum{path="warm"}'] <= took
    assert found['pod_router_new_pod_seconds_bucket{path="warm",le="+Inf"}'] == 1
    assert 'pod_router_new_pod_seconds_bucket{path="warm",le="0.005"}' in found  # milliseconds

    # Its next request is an ordinary hit on the same pod; no second claim.
    status, headers, _ = get(gateway, "warm-ann")
    assert status == 200 and headers["X-Pod-Name"] == "user--pool-a1"
    assert log_of(gateway, "user-warm-ann", 2)[-1] == ["HIT", "user-warm-ann", "200"]

    # The pool is empty now (its target still 1): the next new user is a
    # cold start, held until its own pod is ready.
    ip = serve_pod(pods, "user-warm-bea", 201)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "warm-bea")
        events = driver.events(timeout=10, expect=1)
        assert [event["pod"] for event, _ in events] == ["user-warm-bea"]
        session = driver.redis.hgetall(f"{KEY_PREFIX}session:user-warm-bea")
        assert (session["state"], session["origin"], session["stage"]) == ("pending", "cold", "queued")
        assert driver.mark_ready("warm-bea", "user-warm-bea", ip) == "ok"
        status, headers, _ = reply.result(timeout=30)
    assert status == 200 and headers["X-Pod-Name"] == "user-warm-bea"
    assert log_of(gateway, "user-warm-bea", 1) == [["MISS", "user-warm-bea", "200"]]

    found = values(gateway)
    assert found["pod_router_pool_claims_total"] == 1
    assert found["pod_router_pool_empty_total"] == 1
    assert found['pod_router_new_pod_seconds_count{path="warm"}'] == 1
    assert found['pod_router_new_pod_seconds_count{path="cold"}'] == 1
    assert found['pod_router_new_pod_seconds_bucket{path="cold",le="+Inf"}'] == 1

    # Without a pool (no target), a cold start is not an empty pool.
    driver.redis.delete(POOL_TARGET)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "warm-cid")
        assert len(driver.events(timeout=10, expect=1)) == 1
        driver.mark_failed("warm-cid", "user-warm-cid", "test over")
        assert reply.result(timeout=30)[0] == 502
    found = values(gateway)
    assert found["pod_router_pool_empty_total"] == 1
    assert found['pod_router_new_pod_seconds_count{path="cold"}'] == 1  # it never got a pod


def test_a_claim_the_gateway_cannot_use_is_refused_and_not_counted(gateway, redis_server, rabbitmq,
                                                                    driver):
    """A pool address outside pod_router_allow_cidr (a poisoned Redis): the
    pod is used up, the request refused, and the claim not counted as one
    that served a user."""
    gateway.configure(redis_server, rabbitmq).start()
    driver.redis.sadd(POOL_FREE, "user--pool-x1")
    driver.redis.hset(POOL_ADDRESS, "user--pool-x1", "192.0.2.1 80")
    driver.redis.set(POOL_TARGET, 1)
    status, _, _ = get(gateway, "warm-eve")
    assert status == 502
    assert log_of(gateway, "user-warm-eve", 1) == [["FORBIDDEN", "user-warm-eve", "502"]]
    assert "outside pod_router_allow_cidr" in gateway.error_log()
    assert driver.redis.hget(POOL_CLAIMED, "user--pool-x1") == "user-warm-eve"  # it was claimed
    found = values(gateway)
    assert found["pod_router_pool_claims_total"] == 0
    assert found['pod_router_new_pod_seconds_count{path="warm"}'] == 0


def test_concurrent_first_requests_of_one_user_take_one_pool_pod(gateway, redis_server, rabbitmq,
                                                                  driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    # Two free pods: a request that claimed for itself would take the second.
    seed_pool_pod(driver, pods, "user--pool-b1", 202)
    seed_pool_pod(driver, pods, "user--pool-b2", 203)
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: get(gateway, "warm-dan"), range(10)))
    served_by = {headers.get("X-Pod-Name") for _, headers, _ in results}
    assert [status for status, _, _ in results] == [200] * 10
    assert len(served_by) == 1
    [claimed] = served_by
    [left] = driver.redis.smembers(POOL_FREE)
    assert {claimed, left} == {"user--pool-b1", "user--pool-b2"}
    assert list(driver.redis.hgetall(POOL_ADDRESS)) == [left]
    assert driver.redis.lrange(POOL_CLAIMS, 0, -1) == [f"{claimed} user-warm-dan"]
    assert driver.redis.hget(f"{KEY_PREFIX}session:user-warm-dan", "pod") == claimed
    assert driver.events(timeout=0.5) == []
    outcomes = sorted(line[0] for line in log_of(gateway, "user-warm-dan", 10))
    assert outcomes == ["CLAIMED"] + ["HIT"] * 9
    assert values(gateway)["pod_router_pool_claims_total"] == 1


def test_a_browser_of_a_new_user_gets_the_warm_pod_not_the_page(gateway, redis_server, rabbitmq,
                                                                 driver, pods):
    gateway.configure(redis_server, rabbitmq, wait_mode="page").start()
    seed_pool_pod(driver, pods, "user--pool-c1", 204)
    status, headers, body = get(gateway, "warm-eve", headers={"Accept": "text/html"})
    assert status == 200 and headers["X-Pod-Name"] == "user--pool-c1"
    assert b"It works!" in body
    assert "X-Pod-Router-Stage" not in headers
    assert driver.events(timeout=0.5) == []


def test_the_waiting_page_shows_the_stage(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq, wait_mode="page").start()

    # A new user without a pool: this request published, the stage is queued.
    status, headers, body = get(gateway, "warm-fay", headers={"Accept": "text/html"})
    assert status == 503 and headers["X-Pod-Router-Stage"] == "queued"
    assert "Starting your environment&hellip; (queued)</h1>" in body.decode()
    assert len(driver.events(timeout=5, expect=1)) == 1

    # Another request is creating the pod: the page follows its stage.
    hold_pending(driver, "warm-gus", "pulling image")
    status, headers, body = get(gateway, "warm-gus", headers={"Accept": "text/html"})
    page = body.decode()
    assert status == 503 and headers["Retry-After"] == "2" and headers["Cache-Control"] == "no-store"
    assert headers["X-Pod-Router-Stage"] == "pulling image"
    assert headers["Content-Type"] == "text/html"
    assert "Starting your environment&hellip; (pulling image)</h1>" in page
    assert "image is being downloaded" in page
    assert '<meta http-equiv="refresh" content="2">' in page

    driver.redis.hset(f"{KEY_PREFIX}session:user-warm-gus", "stage", "starting")
    status, headers, body = get(gateway, "warm-gus", headers={"Accept": "text/html"})
    assert status == 503 and headers["X-Pod-Router-Stage"] == "starting"
    assert "(starting)</h1>" in body.decode() and "pulling image" not in body.decode()

    # Only the module's own words reach the page, never Redis's text.
    driver.redis.hset(f"{KEY_PREFIX}session:user-warm-gus", "stage", "<script>alert(1)</script>")
    status, headers, body = get(gateway, "warm-gus", headers={"Accept": "text/html"})
    assert status == 503 and headers["X-Pod-Router-Stage"] == "queued"
    assert "<script>" not in body.decode() and "(queued)</h1>" in body.decode()

    assert driver.events(timeout=0.3) == []  # the pending user's lock held: no event
    assert [line[0] for line in log_of(gateway, "user-warm-gus", 3)] == ["STARTING"] * 3


def test_a_held_client_that_times_out_gets_the_latest_stage(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq, wait_timeout="3s", recheck_interval="200ms").start()
    hold_pending(driver, "warm-hal", "scheduled")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "warm-hal")
        wait_until(lambda: values(gateway)["pod_router_waiting_requests"] == 1, what="the request held")
        # a re-check routes again and reads the newer stage
        driver.redis.hset(f"{KEY_PREFIX}session:user-warm-hal", "stage", "pulling image")
        status, headers, body = reply.result(timeout=30)
    assert status == 503 and headers["Retry-After"] == "2"
    assert headers["X-Pod-Router-Stage"] == "pulling image"
    assert log_of(gateway, "user-warm-hal", 1) == [["TIMEOUT", "user-warm-hal", "503"]]

    # Without a change, the stage it last saw.
    hold_pending(driver, "warm-ida", "creating")
    status, headers, _ = get(gateway, "warm-ida")
    assert status == 503 and headers["X-Pod-Router-Stage"] == "creating"


def test_a_failed_creation_shows_its_reason(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq, wait_mode="page").start()
    reason = "ErrImagePull: registry.example/app:v2 not found"
    driver.redis.hset(f"{KEY_PREFIX}session:user-warm-jo", mapping={
        "identity": "warm-jo", "pod": "user-warm-jo", "origin": "cold", "state": "failed",
        "stage": "failed", "reason": reason})
    status, headers, body = get(gateway, "warm-jo", headers={"Accept": "text/html"})
    assert status == 502 and headers["X-Pod-Router-Stage"] == "failed"
    assert body.decode() == f"pod-router: {reason}\n"
    assert log_of(gateway, "user-warm-jo", 1) == [["FAILED", "user-warm-jo", "502"]]
    assert driver.events(timeout=0.3) == []
