"""The module's request path, end to end in the packaged nginx: identity,
hit, miss (one event for many requests), holding and waking, failures,
outages, the allow-list, activity, metrics and reload."""

import concurrent.futures
import socket
import time
import urllib.error
import urllib.request
import zlib

import pytest

from conftest import KEY_PREFIX, POD_NETWORK, Gateway
from polling import wait_until
from slow_relay import SlowRelay

POD_IP = POD_NETWORK + ".{}"


def get(gateway, user=None, path="/", headers=None, timeout=30):
    request = urllib.request.Request(gateway.url(path))
    if user is not None:
        request.add_header("X-User-ID", user)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def serve_pod(pods, name, last_octet):
    ip = POD_IP.format(last_octet)
    if name not in pods.pods():
        pods.add_pod(name, ip, 80)
    return ip


def metrics(gateway):
    return get(gateway, path="/pod-router/metrics")[2].decode()


def subscriptions(driver):
    """Redis's own count: subscribers to the notification channel, and
    channel or pattern subscriptions held by any client at all."""
    [(_, on_channel)] = driver.redis.pubsub_numsub(f"{KEY_PREFIX}notify")
    anywhere = sum(int(client["sub"]) + int(client["psub"]) for client in driver.redis.client_list())
    return on_channel, anywhere


def test_identity_missing_or_invalid(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq).start()
    status, _, _ = get(gateway)
    assert status == 401
    status, headers, body = get(gateway, "bad\tuser")
    assert status == 400
    assert body == b"pod-router: identity contains control character U+0009 at byte offset 3\n"
    assert driver.events(timeout=0.3) == []


def test_first_request_creates_once_is_held_and_served(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-alice", 1)
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        replies = [pool.submit(get, gateway, "alice") for _ in range(50)]
        events = driver.events(timeout=10, expect=1)
        time.sleep(0.5)  # late duplicates would show up now
        events += driver.events(timeout=0)
        assert len(events) == 1
        event, properties = events[0]
        assert event["identity"] == "alice" and event["pod"] == "user-alice" and event["version"] == 1
        assert properties.delivery_mode == 2 and properties.content_type == "application/json"
        assert all(not reply.done() for reply in replies)
        assert driver.mark_ready("alice", "user-alice", ip) == "ok"
        results = [reply.result(timeout=30) for reply in replies]
    assert all(status == 200 for status, _, _ in results)
    assert all(headers["X-Pod-Name"] == "user-alice" for _, headers, _ in results)
    statuses = [line.split()[0] for line in gateway.access_log(50)]
    assert statuses.count("MISS") == 1 and statuses.count("WAIT") == 49

    # The hot path: straight to the pod, no event.
    status, headers, _ = get(gateway, "alice")
    assert status == 200 and headers["X-Pod-Name"] == "user-alice"
    assert gateway.access_log(51)[-1].split() == ["HIT", "user-alice", "200"]
    assert driver.events(timeout=0.2) == []


def test_a_failed_creation_answers_502_with_the_reason_at_once(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq).start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "bob")
        driver.events(timeout=10, expect=1)
        started = time.monotonic()
        driver.mark_failed("bob", "user-bob", "ErrImagePull: image not found")
        status, _, body = reply.result(timeout=30)
    assert status == 502
    assert body == b"pod-router: ErrImagePull: image not found\n"
    assert time.monotonic() - started < 5  # woken by the notification, not the 10 s timeout


def test_waiting_ends_in_503_with_retry_after(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq, wait_timeout="1s").start()
    status, headers, _ = get(gateway, "carol")
    assert status == 503 and headers["Retry-After"] == "2"
    assert gateway.access_log()[-1].split()[0] == "TIMEOUT"
    # nothing of that request may wake up later (re-checks run every 500 ms)
    time.sleep(1.5)
    assert len(gateway.access_log()) == 1


def test_an_address_outside_the_allow_list_is_refused(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq).start()
    driver.mark_ready("mallory", "user-mallory", "10.1.2.3")
    status, _, _ = get(gateway, "mallory")
    assert status == 502
    assert "outside pod_router_allow_cidr" in gateway.error_log()
    assert gateway.access_log()[-1].split()[0] == "FORBIDDEN"


def test_browsers_can_get_a_refreshing_page(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq, wait_mode="auto").start()
    status, headers, body = get(gateway, "dave", headers={"Accept": "text/html"})
    assert status == 503 and b"Starting your environment" in body
    assert 'http-equiv="refresh"' in body.decode()
    assert len(driver.events(timeout=5, expect=1)) == 1


def test_redis_down_is_503_at_once_and_recovers(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-erin", 5)
    driver.mark_ready("erin", "user-erin", ip)
    assert get(gateway, "erin")[0] == 200
    redis_server.stop()
    try:
        started = time.monotonic()
        status, headers, _ = get(gateway, "erin")
        assert status == 503 and headers["Retry-After"] == "2"
        assert time.monotonic() - started < 3
    finally:
        redis_server.start()
    driver.mark_ready("erin", "user-erin", ip)
    wait_until(lambda: get(gateway, "erin")[0] == 200, timeout=20, what="recovery after Redis restart")


def test_rabbitmq_down_is_503_and_releases_the_lock(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq).start()
    rabbitmq.stop()
    try:
        status, headers, _ = get(gateway, "frank")
        assert status == 503 and headers["Retry-After"] == "2"
        # released asynchronously, right after the answer went out
        wait_until(lambda: driver.redis.exists("pod-router:creating:user-frank") == 0, timeout=5,
                   what="the creation lock released")
        assert "publishing a creation event failed" in gateway.error_log()
    finally:
        rabbitmq.start()
    driver.declare()  # a fresh broker, as the controller would find it
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "frank")
        assert len(driver.events(timeout=15, expect=1)) == 1
        driver.mark_failed("frank", "user-frank", "test over")
        assert reply.result(timeout=30)[0] == 502


def test_an_open_websocket_keeps_its_user_active(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq, touch_interval="1s").start()
    ip = serve_pod(pods, "user-grace", 7)
    driver.mark_ready("grace", "user-grace", ip)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as ws:
        ws.sendall(b"GET /chat HTTP/1.1\r\nHost: x\r\nX-User-ID: grace\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert b"101 Switching Protocols" in ws.recv(4096)
        first = driver.activity("user-grace")
        wait_until(lambda: driver.activity("user-grace") > first + 1500, timeout=10,
                   what="activity while the WebSocket is open")
        # the pod echoes a masked text frame
        ws.sendall(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
        assert ws.recv(16) == bytes([0x81, 0x02]) + b"hi"


def test_metrics_are_prometheus_text(gateway, redis_server, rabbitmq, driver):
    gateway.configure(redis_server, rabbitmq).start()
    get(gateway)
    status, headers, body = get(gateway, path="/pod-router/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert 'pod_router_requests_total{outcome="no_identity"}' in text
    assert "# TYPE pod_router_wait_seconds histogram" in text
    assert 'pod_router_wait_seconds_bucket{le="+Inf"}' in text


def test_reload_while_requests_are_parked(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-heidi", 8)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = [pool.submit(get, gateway, "heidi") for _ in range(3)]
        driver.events(timeout=10, expect=1)
        gateway.reload()
        time.sleep(1)
        driver.mark_ready("heidi", "user-heidi", ip)
        results = [reply.result(timeout=30) for reply in replies]
    assert [status for status, _, _ in results] == [200, 200, 200]
    assert get(gateway, "heidi")[0] == 200
    log = gateway.error_log()
    assert "signal 11" not in log and "[alert]" not in log


@pytest.mark.parametrize("bad", [
    "pod_router_redis 127.0.0.1:6379 bogus=1;",
    "pod_router_amqp amqp://user:secret@127.0.0.1/;",
])
def test_bad_directives_fail_nginx_t(gateway, bad):
    gateway.write_conf(bad + f"\nserver {{ listen 127.0.0.1:{gateway.port}; }}")
    result = gateway.test_config()
    assert result.returncode != 0
    assert "pod_router_" in result.stderr and "nginx.conf:" in result.stderr


def test_a_dead_pod_costs_a_cold_start_not_an_error(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq,
                      location_extra="error_page 502 = @pod_router_recover;").start()
    old_ip = serve_pod(pods, "user-ivan", 9)
    driver.mark_ready("ivan", "user-ivan", old_ip)
    assert get(gateway, "ivan")[0] == 200
    pods.remove_pod("user-ivan")  # the pod dies: its address refuses connections

    new_ip = POD_IP.format(10)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "ivan")
        events = driver.events(timeout=10, expect=1)
        assert [event["pod"] for event, _ in events] == ["user-ivan"]
        pods.add_pod("user-ivan", new_ip, 80)
        driver.mark_ready("ivan", "user-ivan", new_ip)
        status, headers, _ = reply.result(timeout=30)
    assert status == 200 and headers["X-Pod-Name"] == "user-ivan"
    assert "refused the connection; its session is dropped" in gateway.error_log()


def test_recovery_waits_while_the_dead_address_is_recorded_again(gateway, redis_server, rabbitmq, driver, pods):
    """The pod died but the API has not heard yet: the controller records it
    ready at the address that just refused. The request waits for the
    replacement instead of answering 502."""
    gateway.configure(redis_server, rabbitmq, location_extra="error_page 502 = @pod_router_recover;").start()
    old_ip = serve_pod(pods, "user-ulla", 40)
    driver.mark_ready("ulla", "user-ulla", old_ip)
    assert get(gateway, "ulla")[0] == 200
    pods.remove_pod("user-ulla")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "ulla")
        assert len(driver.events(timeout=10, expect=1)) == 1
        driver.mark_ready("ulla", "user-ulla", old_ip)  # from a stale pod status
        time.sleep(1.5)  # rechecks find the same dead address: still waiting
        assert not reply.done()
        new_ip = POD_IP.format(41)
        pods.add_pod("user-ulla", new_ip, 80)
        driver.mark_ready("ulla", "user-ulla", new_ip)
        status, headers, _ = reply.result(timeout=30)
    assert status == 200 and headers["X-Pod-Name"] == "user-ulla"
    assert "which refused the connection; waiting" in gateway.error_log()


def test_without_recovery_a_dead_pod_is_one_502_then_a_new_pod(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-judy", 11)
    driver.mark_ready("judy", "user-judy", ip)
    pods.remove_pod("user-judy")
    assert get(gateway, "judy")[0] == 502
    wait_until(lambda: not driver.redis.exists("pod-router:session:user-judy"), timeout=5,
               what="the stale session dropped")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "judy")
        assert len(driver.events(timeout=10, expect=1)) == 1
        driver.mark_failed("judy", "user-judy", "test over")
        assert reply.result(timeout=30)[0] == 502


def test_recovery_never_sends_a_request_twice_to_a_pod_that_took_it(gateway, redis_server, rabbitmq, driver):
    """error_page 502 = @pod_router_recover is a cold start after a dead pod
    only: a pod that accepted the connection and then failed (closed it
    without an answer) keeps its 502, and sees the request once."""
    gateway.configure(redis_server, rabbitmq, location_extra="error_page 502 = @pod_router_recover;").start()
    ip = POD_IP.format(42)
    taken = []
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ip, 80))
        listener.listen(8)
        listener.settimeout(0.2)

        def hang_up():
            # until 15 s pass, or 1.5 s after the first request (time for
            # a second one to come, if the gateway sent it again)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    connection, _ = listener.accept()
                except socket.timeout:
                    continue
                with connection:
                    taken.append(connection.recv(65536))
                deadline = min(deadline, time.monotonic() + 1.5)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            pod = pool.submit(hang_up)
            driver.mark_ready("wera", "user-wera", ip)
            status, _, _ = pool.submit(get, gateway, "wera", "/once").result(timeout=30)
            assert status == 502
            pod.result(timeout=30)
    assert [request.split(b" ")[1] for request in taken] == [b"/once"]
    # the pod lives: its session stays, and no creation was asked for
    assert driver.redis.exists("pod-router:session:user-wera")
    assert driver.events(timeout=0.5) == []
    assert "failed after taking the request; it is not sent again" in gateway.error_log()


def test_the_cache_answers_without_redis(gateway, redis_server, rabbitmq, driver, pods):
    # one worker: the cache is per worker
    gateway.configure(redis_server, rabbitmq, extra_http="pod_router_cache_ttl 30s;", workers=1).start()
    ip = serve_pod(pods, "user-kim", 12)
    driver.mark_ready("kim", "user-kim", ip)
    assert get(gateway, "kim")[0] == 200
    # Redis forgets the session; the worker still knows the address.
    driver.redis.delete("pod-router:session:user-kim")
    status, headers, _ = get(gateway, "kim")
    assert status == 200 and headers["X-Pod-Name"] == "user-kim"
    assert gateway.access_log(2)[-1].split()[0] == "CACHE_HIT"
    _, _, body = get(gateway, path="/pod-router/metrics")
    assert "pod_router_cache_hits_total 1" in body.decode()


def test_too_many_waiting_requests_get_503_at_once(gateway, redis_server, rabbitmq, driver):
    # one worker: the bound is per worker
    gateway.configure(redis_server, rabbitmq, extra_http="pod_router_max_waiting 2;", workers=1).start()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [pool.submit(get, gateway, "lee") for _ in range(2)]
        driver.events(timeout=10, expect=1)
        wait_until(lambda: "pod_router_waiting_requests 2" in get(gateway, path="/pod-router/metrics")[2].decode(),
                   what="two parked requests")
        status, headers, _ = get(gateway, "lee")
        assert status == 503 and headers["Retry-After"] == "2"
        driver.mark_failed("lee", "user-lee", "test over")
        assert [reply.result(timeout=30)[0] for reply in held] == [502, 502]


def test_a_request_turned_away_starts_no_creation(gateway, redis_server, rabbitmq, driver):
    # pod_router_max_waiting bounds the requests held; one it turns away
    # must not leave a pod being created for nobody.
    gateway.configure(redis_server, rabbitmq, extra_http="pod_router_max_waiting 2;", workers=1).start()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        held = [pool.submit(get, gateway, f"held-{n}") for n in range(2)]
        assert len(driver.events(timeout=10, expect=2)) == 2
        wait_until(lambda: "pod_router_waiting_requests 2" in metrics(gateway), what="two parked requests")
        for n in range(3):
            status, headers, _ = get(gateway, f"turned-{n}")
            assert status == 503 and headers["Retry-After"] == "2"
        assert driver.events(timeout=1) == []
        # each lock was given back: nothing stops the next request creating
        assert not driver.redis.keys(f"{KEY_PREFIX}creating:user-turned-*")
        for n in range(2):
            driver.mark_failed(f"held-{n}", f"user-held-{n}", "test over")
        assert [reply.result(timeout=30)[0] for reply in held] == [502, 502]

        again = pool.submit(get, gateway, "turned-0")
        [(event, _)] = driver.events(timeout=10, expect=1)
        assert event["pod"] == "user-turned-0"
        driver.mark_failed("turned-0", "user-turned-0", "test over")
        assert again.result(timeout=30)[0] == 502
    outcomes = [line.split()[0] for line in gateway.access_log(6)]
    assert outcomes.count("OVERLOAD") == 3


def test_the_default_bound_on_waiting_follows_worker_connections(gateway, redis_server, rabbitmq, driver):
    # half of worker_connections (1024 in the test's nginx.conf): a held
    # request needs its client's connection and then one to its pod
    gateway.configure(redis_server, rabbitmq).start()
    assert "pod_router_max_waiting" not in gateway.error_log()
    gateway.stop()
    gateway.configure(redis_server, rabbitmq, extra_http="pod_router_max_waiting 600;")
    said = gateway.test_config().stderr + gateway.error_log()
    assert '"pod_router_max_waiting 600" is more than half of "worker_connections 1024"' in said


def test_a_pod_ready_before_its_request_parks_wakes_it_at_once(gateway, redis_server, rabbitmq, driver, pods):
    # The controller can record a pod that already runs (after Redis lost
    # its data) within milliseconds of the event: before the gateway has
    # heard the broker confirm it. Here the broker's answers pass through a
    # relay that holds them back a second, and "ready" is announced in
    # that second. Re-checks are a minute apart, past the wait timeout:
    # only the notification can serve this request.
    relay = SlowRelay(rabbitmq.port)
    try:
        gateway.configure(redis_server, rabbitmq, workers=1, amqp_port=relay.port, wait_timeout="10s",
                          recheck_interval="60s", extra_main="thread_pool one threads=1;",
                          extra_http="pod_router_thread_pool one;").start()
        # the publisher's connection opens at full speed first
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(get, gateway, "wake-first")
            driver.events(timeout=10, expect=1)
            driver.mark_failed("wake-first", "user-wake-first", "test over")
            assert first.result(timeout=30)[0] == 502

        ip = serve_pod(pods, "user-wake", 17)
        relay.answer_delay = 1.0
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reply = pool.submit(get, gateway, "wake")
            wait_until(lambda: driver.redis.exists(f"{KEY_PREFIX}creating:user-wake"),
                       what="the creation lock, taken before the event is published")
            assert driver.mark_ready("wake", "user-wake", ip) == "ok"
            status, headers, _ = reply.result(timeout=30)
    finally:
        relay.stop()
    assert status == 200 and headers["X-Pod-Name"] == "user-wake"
    assert gateway.access_log(2)[-1].split() == ["MISS", "user-wake", "200"]


def test_proxy_pass_through_the_upstream_variable(gateway, redis_server, rabbitmq, driver, pods):
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-mia", 13)
    driver.mark_ready("mia", "user-mia", ip)
    status, headers, _ = get(gateway, "mia", path="/by-variable/x")
    assert status == 200 and headers["X-Pod-Name"] == "user-mia"


def test_a_full_publishing_queue_is_503_at_once(gateway, redis_server, rabbitmq, driver):
    # A "broker" that accepts connections and never speaks: each publish
    # occupies the pool's only thread until its 2 s timeout.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        gateway.configure(redis_server, rabbitmq, workers=1, amqp_port=black_hole.getsockname()[1],
                          extra_main="thread_pool tiny threads=1 max_queue=1;",
                          extra_http="pod_router_thread_pool tiny;").start()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            replies = [pool.submit(get, gateway, f"queue-{n}") for n in range(3)]
            statuses = sorted(reply.result(timeout=30)[0] for reply in replies)
    assert statuses == [503, 503, 503]
    outcomes = sorted(line.split()[0] for line in gateway.access_log(3))
    assert outcomes.count("OVERLOAD") == 1 and outcomes.count("UNAVAILABLE") == 2


def test_two_gateways_sharing_redis_publish_one_event(gateway, tmp_path, redis_server, rabbitmq, driver, pods):
    (tmp_path / "second").mkdir()
    second = Gateway(tmp_path / "second")
    try:
        gateway.configure(redis_server, rabbitmq).start()
        second.configure(redis_server, rabbitmq).start()
        ip = serve_pod(pods, "user-nina", 14)
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            replies = [pool.submit(get, target, "nina") for target in (gateway, second) for _ in range(20)]
            events = driver.events(timeout=10, expect=1)
            time.sleep(0.5)
            events += driver.events(timeout=0)
            assert len(events) == 1
            driver.mark_ready("nina", "user-nina", ip)
            assert [reply.result(timeout=30)[0] for reply in replies] == [200] * 40
    finally:
        second.stop()
    assert second.valgrind_findings() == []


def test_each_worker_subscribes_by_default(gateway, redis_server, rabbitmq, driver):
    # The baseline the subscribe-off test below is measured against.
    gateway.configure(redis_server, rabbitmq).start()
    wait_until(lambda: subscriptions(driver) == (2, 2), timeout=10, what="both workers subscribed")


def test_with_subscribe_off_waiting_requests_poll(gateway, redis_server, rabbitmq, driver, pods):
    # As behind a Redis proxy without pub/sub: no worker subscribes, and a
    # held request learns that its pod is ready from its re-check alone.
    gateway.configure(redis_server, rabbitmq, recheck_interval="300ms",
                      extra_http="pod_router_subscribe off;").start()
    ip = serve_pod(pods, "user-olga", 15)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, gateway, "olga")
        assert len(driver.events(timeout=10, expect=1)) == 1
        wait_until(lambda: "pod_router_waiting_requests 1" in metrics(gateway), what="the request held")
        assert subscriptions(driver) == (0, 0)
        assert driver.mark_ready("olga", "user-olga", ip) == "ok"
        status, headers, _ = reply.result(timeout=30)
    assert status == 200 and headers["X-Pod-Name"] == "user-olga"

    # among the metrics requests' lines, and logged only after the answer
    def olga_lines():
        return [line.split() for line in gateway.access_log() if "user-olga" in line]
    assert wait_until(olga_lines, timeout=5, what="the request's log line") == [["MISS", "user-olga", "200"]]
    # the mark-ready's publish reached no worker
    assert "pod_router_notifications_total 0" in metrics(gateway)
    assert subscriptions(driver) == (0, 0)
    # no subscriber link was ever opened, failed or retried
    assert "subscriber" not in gateway.error_log()


def test_a_ready_user_between_touches_is_read_without_the_script(gateway, redis_server, rabbitmq, driver, pods):
    # The route script writes only when activity is due (once per
    # pod_router_touch_interval and worker); in between, one HMGET answers.
    gateway.configure(redis_server, rabbitmq).start()
    ip = serve_pod(pods, "user-hana", 16)
    assert driver.mark_ready("hana", "user-hana", ip) == "ok"
    driver.redis.config_resetstat()
    for _ in range(20):
        status, headers, _ = get(gateway, "hana")
        assert status == 200 and headers["X-Pod-Name"] == "user-hana"
    stats = driver.redis.info("commandstats")
    scripts = sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    assert 1 <= scripts <= gateway.workers  # the first request in each worker touches
    # every request read the session; the script's own HMGET counts too
    assert stats["cmdstat_hmget"]["calls"] == 20
    assert [line.split() for line in gateway.access_log(20)] == [["HIT", "user-hana", "200"]] * 20

    # A session that stops being ready, or is another identity's, is the
    # script's to judge: here a conflict, as before.
    driver.redis.hset(f"{KEY_PREFIX}session:user-hana", "identity", "someone-else")
    status, headers, body = get(gateway, "hana")
    # 409, saying what happened and never whose the name is
    assert status == 409 and headers["Content-Type"] == "text/plain"
    assert body == (b"pod-router: this identity's pod name is held by another identity; "
                    b"an operator must resolve it\n")
    assert gateway.access_log(21)[-1].split() == ["CONFLICT", "user-hana", "409"]


def test_the_cache_keeps_four_pods_that_share_a_set(gateway, redis_server, rabbitmq, driver, pods):
    # pod_router_cache_size 16: four sets of four. nginx picks the set with
    # CRC-32 (zlib's) of the pod name: choose five users in one set. The
    # first four all stay cached; the fifth pushes out the least recently
    # used of them, and only that one.
    gateway.configure(redis_server, rabbitmq, workers=1,
                      extra_http="pod_router_cache_ttl 30s; pod_router_cache_size 16;").start()
    names = [name for name in (f"set{n}" for n in range(200)) if zlib.crc32(f"user-{name}".encode()) % 4 == 0][:5]
    assert len(names) == 5
    for n, name in enumerate(names):
        driver.mark_ready(name, f"user-{name}", serve_pod(pods, f"user-{name}", 20 + n))

    served = []

    def route(name):
        status, headers, _ = get(gateway, name)
        assert status == 200 and headers["X-Pod-Name"] == f"user-{name}"
        served.append(name)
        # nginx logs a request after answering it: wait for this one's line
        return gateway.access_log(len(served))[len(served) - 1].split()[0]
    assert [route(name) for name in names[:4]] == ["HIT"] * 4
    assert [route(name) for name in names[:4]] == ["CACHE_HIT"] * 4
    assert route(names[4]) == "HIT"  # the set is full: names[0] goes
    assert [route(name) for name in names[1:5]] == ["CACHE_HIT"] * 4
    assert route(names[0]) == "HIT"
