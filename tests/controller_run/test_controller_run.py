"""The controller's run mode, end to end (see conftest.py)."""

import signal
import threading
import time

import pytest
import redis

from conftest import DEAD_QUEUE, KEY_PREFIX, USERS_NS, wait_until


def subscribe(stack):
    """Collects the notify channel's messages, as the gateway hears them."""
    pubsub = stack.redis.pubsub()
    pubsub.subscribe(f"{KEY_PREFIX}notify")
    wait_until(lambda: pubsub.get_message(timeout=0.1) is not None, what="subscribed")
    heard = []
    done = threading.Event()

    def listen():
        while not done.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                heard.append(message["data"])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    return heard, lambda: (done.set(), thread.join(), pubsub.close())


def test_an_event_creates_a_pod_and_ready_is_recorded(stack):
    heard, stop_listening = subscribe(stack)
    controller = stack.controller().start()
    pod = stack.request("alice")
    session = stack.wait_session(pod, "ready")
    stop_listening()

    pods = stack.pods()
    assert list(pods) == [pod]
    created = pods[pod]
    assert created.metadata.labels["app.kubernetes.io/managed-by"] == "pod-router"
    assert created.metadata.annotations["pod-router.io/identity"] == "alice"
    assert session["ip"] == created.status.pod_ip
    assert session["port"] == "8080"
    assert session["identity"] == "alice"
    assert f"ready {pod}" in heard
    assert stack.redis.exists(f"{KEY_PREFIX}creating:{pod}") == 0
    # acknowledged: nothing left in the queue, nothing unacked
    wait_until(lambda: controller.metric("pod_router_controller_events_acked_total") == 1,
               what="the ack")
    assert stack.queue_depth() == 0
    assert controller.metric("pod_router_controller_pods_created_total") == 1
    assert controller.metric("pod_router_controller_pods_ready_total") == 1
    lines = controller.log_lines()
    assert any(line.get("msg") == "pod ready" and line.get("pod") == pod for line in lines)
    assert all({"ts", "level", "component", "msg"} <= line.keys() for line in lines), lines[:3]


def test_a_bad_image_is_failed_within_5_seconds_and_the_pod_deleted(stack):
    heard, stop_listening = subscribe(stack)
    stack.controller(template=stack.template(image="registry.invalid/nothing:1")).start()
    started = time.monotonic()
    pod = stack.request("bob")
    session = stack.wait_session(pod, "failed", timeout=5)
    assert time.monotonic() - started < 5
    stop_listening()
    assert "ErrImagePull" in session["reason"] or "ImagePullBackOff" in session["reason"]
    assert f"failed {pod}" in heard
    wait_until(lambda: pod not in stack.pods(), timeout=10, what="the failed pod deleted")
    assert stack.queue_depth() == 0


def test_idle_pods_are_reaped_at_the_timeout_and_active_ones_kept(stack):
    heard, stop_listening = subscribe(stack)
    controller = stack.controller(idle_timeout="3s").start()
    idle = stack.request("idle-user")
    busy = stack.request("busy-user")
    stack.wait_session(idle, "ready")
    stack.wait_session(busy, "ready")
    ready_at = time.monotonic()

    def touch(pod):
        # what the gateway's `touch`/`route` do: the activity score is Redis's now
        seconds, micros = stack.redis.time()
        stack.redis.zadd(f"{KEY_PREFIX}activity", {pod: seconds * 1000 + micros // 1000}, xx=True)

    reaped_at = None
    while time.monotonic() - ready_at < 7:
        touch(busy)
        if reaped_at is None and not stack.redis.exists(f"{KEY_PREFIX}session:{idle}"):
            reaped_at = time.monotonic()
        time.sleep(0.5)
    assert reaped_at is not None, "the idle session was never reaped"
    # not before the timeout (3 s from its last activity), not much after
    assert 2.5 <= reaped_at - ready_at <= 5.5, reaped_at - ready_at
    snapshot = stack.pods()  # one read: a pod can vanish between two
    assert idle not in snapshot or snapshot[idle].metadata.deletion_timestamp
    assert stack.session(busy)["state"] == "ready"
    assert busy in stack.pods()
    stop_listening()
    assert f"gone {idle}" in heard
    assert controller.metric("pod_router_controller_pods_reaped_total") == 1
    assert any(line.get("msg") == "reaped an idle pod" and line.get("pod") == idle
               for line in controller.log_lines())

    # once the busy user stops, it goes too
    stack.wait_session(busy, "ready")
    wait_until(lambda: not stack.redis.exists(f"{KEY_PREFIX}session:{busy}"), timeout=8,
               what="the busy session reaped once idle")

    # the reaped user comes back: a new pod (not the old one, which may still
    # be terminating), ready at a fresh address
    snapshot = stack.pods()
    old_uid = snapshot[idle].metadata.uid if idle in snapshot else None
    assert stack.request("idle-user") == idle
    session = stack.wait_session(idle, "ready", timeout=30)
    pod = stack.pods()[idle]
    assert pod.metadata.uid != old_uid and pod.metadata.deletion_timestamp is None
    assert session["ip"] == pod.status.pod_ip


def test_a_repeated_event_for_a_ready_session_is_just_acked(stack):
    controller = stack.controller().start()
    pod = stack.request("carol")
    stack.wait_session(pod, "ready")
    uid = stack.pods()[pod].metadata.uid
    # the gateway's lock expired and another request published again
    stack.publish({"version": 1, "identity": "carol", "pod": pod, "request_id": "again",
                   "timestamp_ms": int(time.time() * 1000)})
    wait_until(lambda: controller.metric("pod_router_controller_events_duplicate_total") == 1,
               what="the duplicate acked")
    assert stack.queue_depth() == 0
    assert stack.pods()[pod].metadata.uid == uid


def test_poison_messages_go_to_the_dead_letter_queue_and_never_loop(stack):
    controller = stack.controller().start()
    stack.publish(None, raw=b"not json at all")
    stack.publish({"version": 1, "identity": "bad\x01identity", "pod": "user-x",
                   "request_id": "r1", "timestamp_ms": 1})
    stack.publish({"version": 99, "identity": "dave"})
    wait_until(lambda: stack.queue_depth(DEAD_QUEUE) == 3, timeout=10, what="3 dead letters")
    assert stack.queue_depth() == 0
    # and the controller goes on serving good events
    pod = stack.request("erin")
    stack.wait_session(pod, "ready")
    assert controller.metric("pod_router_controller_events_dead_lettered_total") == 3
    assert stack.queue_depth(DEAD_QUEUE) == 3
    warnings = [line for line in controller.log_lines()
                if line.get("msg") == "dead-lettering an event that can never succeed"]
    assert len(warnings) == 3


def test_kill_9_before_the_ack_redelivers_without_a_second_pod(stack):
    # Ready 4 s after start: time to kill the controller between the
    # creation and the ack (which waits for Ready).
    template = stack.template(ready_delay=4)
    first = stack.controller("controller-a", template=template).start()
    pod = stack.request("frank")
    wait_until(lambda: pod in stack.pods(), timeout=10, what="the pod created")
    uid = stack.pods()[pod].metadata.uid
    assert stack.session(pod)["state"] == "pending"
    first.kill()
    second = stack.controller("controller-b", template=template).start()
    stack.wait_session(pod, "ready", timeout=20)
    wait_until(lambda: second.metric("pod_router_controller_events_acked_total") == 1,
               what="the redelivery acked")
    assert list(stack.pods()) == [pod]
    assert stack.pods()[pod].metadata.uid == uid, "the pod was created again"
    # The second controller either finds the pod in its watch cache (the
    # list came first) or asks to create it and gets 409 AlreadyExists (the
    # delivery came first); which one is a race, never a second pod.
    assert second.metric("pod_router_controller_pods_created_total") == 0
    assert second.metric("pod_router_controller_pods_already_existed_total") <= 1
    assert stack.queue_depth() == 0


def test_the_reconciler_deletes_orphans_and_stale_sessions(stack):
    controller = stack.controller(orphan_grace="1s", reconcile_interval="1s").start()
    # an orphan: a managed pod nobody has a session for
    # (with what PodSecurity "restricted" asks, or a real API server refuses it)
    stack.core.create_namespaced_pod(USERS_NS, {
        "metadata": {"name": "user-orphan", "labels": {"app.kubernetes.io/managed-by": "pod-router"}},
        "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 101,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "web", "image": "httpd", "ports": [{"containerPort": 8080}],
                                 "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}}]}})
    # a stale session: ready, but its pod does not exist
    stack.redis.hset(f"{KEY_PREFIX}session:user-ghost", mapping={
        "identity": "ghost", "pod": "user-ghost", "state": "ready", "ip": "127.0.0.9",
        "port": "8080", "updated_ms": "1"})
    stack.redis.zadd(f"{KEY_PREFIX}activity", {"user-ghost": int(time.time() * 1000)})
    wait_until(lambda: "user-orphan" not in stack.pods(), timeout=15, what="the orphan deleted")
    wait_until(lambda: not stack.redis.exists(f"{KEY_PREFIX}session:user-ghost"), timeout=10,
               what="the stale session removed")
    assert stack.redis.zscore(f"{KEY_PREFIX}activity", "user-ghost") is None
    # counted once the API has answered the deletion, a moment after it happened
    for kind in ("orphan_pod", "stale_session"):
        wait_until(lambda: controller.metric("pod_router_controller_reconcile_fixes_total",
                                             f'{{kind="{kind}"}}') == 1, what=f"{kind} counted")
    time.sleep(1.5)  # another pass or two: nothing left to fix, nothing fixed twice
    for kind in ("orphan_pod", "stale_session"):
        assert controller.metric("pod_router_controller_reconcile_fixes_total", f'{{kind="{kind}"}}') == 1


def test_api_errors_500_and_429_are_retried_then_succeed(stack):
    controller = stack.controller().start()
    stack.fault(status=500, count=2, method="POST", path_prefix=f"/api/v1/namespaces/{USERS_NS}/pods")
    stack.fault(status=429, count=1, method="POST", path_prefix=f"/api/v1/namespaces/{USERS_NS}/pods",
                retry_after=1)
    started = time.monotonic()
    pod = stack.request("grace")
    stack.wait_session(pod, "ready", timeout=30)
    assert time.monotonic() - started >= 1  # the Retry-After was honoured
    assert list(stack.pods()) == [pod]
    assert controller.metric("pod_router_controller_pods_created_total") == 1


def test_a_401_is_our_credentials_not_the_pod_and_is_retried(stack):
    # A token that expired before its successor was written: the real API
    # server says 401. The pod is fine; the user must not be failed.
    controller = stack.controller().start()
    stack.fault(status=401, count=2, method="POST", path_prefix=f"/api/v1/namespaces/{USERS_NS}/pods")
    pod = stack.request("heidi")
    stack.wait_session(pod, "ready", timeout=30)
    assert controller.metric("pod_router_controller_pods_created_total") == 1
    assert controller.metric("pod_router_controller_pods_failed_total", '{reason="Rejected"}') == 0


def test_graceful_shutdown_finishes_in_flight_work_and_releases_the_lease(stack):
    controller = stack.controller(template=stack.template(ready_delay=2)).start()
    wait_until(lambda: stack.lease_holder() == "controller-a", timeout=10, what="leadership")
    pod = stack.request("heidi")
    wait_until(lambda: pod in stack.pods(), timeout=10, what="the pod created")
    assert controller.stop(signal.SIGTERM) == 0
    # the creation in flight was finished, not abandoned
    assert stack.session(pod)["state"] == "ready"
    assert stack.queue_depth() == 0
    assert stack.lease_holder() in ("", None)
    messages = [line.get("msg") for line in controller.log_lines()]
    assert "shutting down" in messages and "stopped" in messages


def test_readyz_and_metrics(stack):
    controller = stack.controller().start()
    status, body = controller.get("/readyz")
    assert status == 200 and "[+] rabbitmq ok" in body and "[+] redis ok" in body
    assert controller.get("/healthz")[0] == 200
    status, body = controller.get("/metrics")
    assert status == 200
    for name in ("events_consumed_total", "pods_created_total", "pods_ready_total",
                 "pods_reaped_total", "creation_queue_wait_seconds_bucket",
                 "creation_api_seconds_count", "creation_start_seconds_sum", "leader "):
        assert f"pod_router_controller_{name}" in body, name
    assert controller.get("/nothing")[0] == 404


def test_settings_from_a_file_and_their_precedence(stack, tmp_path):
    import subprocess
    from conftest import CONTROLLER
    config = tmp_path / "controller.toml"
    config.write_text('[run]\nidle-timeout = "from-file"\n')
    template = stack.template()
    run = [CONTROLLER, "run", f"--pod-template={template}", f"--config={config}"]
    env = {"PATH": "/usr/bin:/bin", "POD_ROUTER_IDLE_TIMEOUT": "from-env"}
    done = subprocess.run(run, capture_output=True, text=True, timeout=10, env=env)
    assert done.returncode == 78 and '"from-file"' in done.stderr, done.stderr  # file over env
    done = subprocess.run(run + ["--idle-timeout=from-flag"], capture_output=True, text=True,
                          timeout=10, env=env)
    assert '"from-flag"' in done.stderr, done.stderr  # flag over file
    done = subprocess.run([CONTROLLER, "run", f"--pod-template={template}"], capture_output=True,
                          text=True, timeout=10, env=env)
    assert '"from-env"' in done.stderr, done.stderr  # env over the default


def test_bad_settings_are_refused_with_a_clear_message(stack, tmp_path):
    import subprocess
    from conftest import CONTROLLER
    template = stack.template()
    cases = [
        (["--idle-timeout=soon"], "invalid value \"soon\" for --idle-timeout"),
        (["--amqp-url=amqp://guest:secret@127.0.0.1/"], "must not hold credentials"),
        (["--redis-password-file=/nonexistent"], "cannot read the Redis password file"),
        (["--lease-duration=5s", "--renew-deadline=10s"], "--retry-period < --renew-deadline"),
    ]
    for extra, expected in cases:
        done = subprocess.run([CONTROLLER, "run", f"--pod-template={template}", *extra],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 78, (extra, done.stderr)
        assert expected in done.stderr, (extra, done.stderr)
        assert "secret" not in done.stderr


def test_two_replicas_one_leader_and_takeover_after_kill_9(stack):
    # client-go's timings, the defaults: a 15 s Lease, renewed every 2 s
    first = stack.controller("controller-a").start()
    wait_until(lambda: stack.lease_holder() == "controller-a", timeout=10, what="a leader")
    second = stack.controller("controller-b").start()
    time.sleep(3)  # a few retry periods: the follower must not take over
    assert stack.lease_holder() == "controller-a"
    assert first.metric("pod_router_controller_leader") == 1
    assert second.metric("pod_router_controller_leader") == 0
    # both consume: consuming needs no leader
    pods = [stack.request(f"user-{n}") for n in range(6)]
    for pod in pods:
        stack.wait_session(pod, "ready")
    consumed = [c.metric("pod_router_controller_events_consumed_total") for c in (first, second)]
    assert sum(consumed) == 6

    first.kill()
    killed_at = time.monotonic()
    wait_until(lambda: stack.lease_holder() == "controller-b", timeout=25, what="the takeover")
    assert time.monotonic() - killed_at < 20
    wait_until(lambda: second.metric("pod_router_controller_leader") == 1, what="leader gauge")
    # and the new leader does the leader's work: no second leader meanwhile
    assert second.metric("pod_router_controller_leader_transitions_total") == 1


def test_a_rabbitmq_restart_loses_no_event(stack):
    controller = stack.controller(template=stack.template(ready_delay=3)).start()
    before = [stack.request(f"before-{n}") for n in range(2)]
    for pod in before:
        stack.wait_session(pod, "ready")
    # Delivered but not yet acknowledged when the broker goes down (the ack
    # waits for Ready): the broker keeps them and delivers them again.
    in_flight = [stack.request(f"in-flight-{n}") for n in range(2)]
    wait_until(lambda: all(pod in stack.pods() for pod in in_flight), what="in-flight pods")
    stack.rabbitmq.restart()
    # and events published once it is back, while the controller reconnects
    after = [stack.request(f"after-{n}") for n in range(3)]
    for pod in in_flight + after:
        stack.wait_session(pod, "ready", timeout=40)
    assert sorted(stack.pods()) == sorted(before + in_flight + after)
    assert controller.metric("pod_router_controller_amqp_reconnects_total") >= 1
    wait_until(lambda: stack.queue_depth() == 0, timeout=20, what="the queue drained")
    # the redeliveries found their sessions ready and were only acknowledged
    assert controller.metric("pod_router_controller_pods_created_total") == 7
    assert controller.metric("pod_router_controller_events_duplicate_total") >= 2


def test_a_redis_outage_delays_outcomes_but_loses_none(stack):
    controller = stack.controller(template=stack.template(ready_delay=2)).start()
    pod = stack.request("ivan")
    wait_until(lambda: pod in stack.pods(), timeout=10, what="the pod created")
    stack.redis_server.stop()
    status = wait_until(lambda: controller.get("/readyz")[0] == 503 and controller.get("/readyz"),
                        timeout=10, what="not ready without Redis")
    assert "[-] redis failed" in status[1]
    time.sleep(3)  # the pod became ready meanwhile; the outcome cannot be written yet
    stack.redis_server.start()
    stack.redis = redis.Redis(port=stack.redis_server.port, decode_responses=True)
    # the restarted Redis is empty (no persistence in the tests): mark_ready
    # records the pod all the same, and the event is acked only then
    stack.wait_session(pod, "ready", timeout=30)
    wait_until(lambda: controller.metric("pod_router_controller_events_acked_total") == 1,
               what="acked after the outcome")
    assert controller.get("/readyz")[0] == 200


@pytest.fixture
def short_history_kube(tmp_path):
    from servers import ON_REAL_CLUSTER, KubeSim
    if ON_REAL_CLUSTER:
        pytest.skip("needs kube-sim's --watch-history to force a 410 Gone")
    sim = KubeSim(tmp_path / "kube-sim", "127.59.0.0/24", extra=("--watch-history", "3"))
    yield sim
    sim.stop()


def test_the_watch_relists_after_410_gone(stack, short_history_kube):
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config
    kube = short_history_kube
    kube_config.load_kube_config(config_file=str(kube.kubeconfig))
    core = kube_client.CoreV1Api()
    core.create_namespace({"metadata": {"name": USERS_NS}})
    # admin credentials: this kube-sim has no RBAC objects; the watch is
    # renewed every 1-2 s
    controller = stack.controller(kubeconfig=kube.kubeconfig, lease_namespace="default",
                                  watch_timeout="1s")
    controller.start()
    # Changes the pod watch does not show (other objects) push its last
    # resourceVersion out of a history of 3: the next renewal gets 410 Gone,
    # and the controller lists again instead of failing or missing pods.
    for n in range(8):
        core.create_namespaced_config_map(USERS_NS, {"metadata": {"name": f"noise-{n}"}})
    wait_until(lambda: controller.metric("pod_router_controller_watch_relists_total") >= 1,
               timeout=10, what="a relist after 410")
    pod = stack.request("judy")
    stack.wait_session(pod, "ready", timeout=20)
    assert any(line.get("msg") == "watch ended by the server" and line.get("code") == 410
               for line in controller.log_lines())
