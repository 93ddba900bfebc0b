"""The warm pool and the spawn progress, end to end (issue 10; see
conftest.py). The tests play the gateway's part with the `route` script:
a user with no session takes a free pool pod (`claimed`) or, with none
free, the creation lock (`create`) and a creation event is published."""

import hashlib
import json
import os
import re
import signal
import threading
import time
import uuid

import pytest
from kubernetes import client as kube_client

from conftest import KEY_PREFIX, ON_REAL_CLUSTER, USERS_NS, Stack, apply_local_overlay, wait_until
from servers import KubeSim

POOL_LABEL = "pod-router.io/pool"
SESSION_LABEL = "pod-router.io/session"
IDENTITY_HASH_LABEL = "pod-router.io/identity-hash"
IDENTITY_ANNOTATION = "pod-router.io/identity"
CLAIMED_AT_ANNOTATION = "pod-router.io/claimed-at"
POOL_NAME = re.compile(r"^user--pool-[0-9a-f]{12}$")

FREE = f"{KEY_PREFIX}pool:free"
ADDRESS = f"{KEY_PREFIX}pool:address"
CLAIMS = f"{KEY_PREFIX}pool:claims"
CLAIMED = f"{KEY_PREFIX}pool:claimed"
TARGET = f"{KEY_PREFIX}pool:target"
METRIC = "pod_router_controller_"

# Stage order (common/src/redis_schema.cpp, kSpawnStages).
STAGES = ["queued", "creating", "scheduled", "pulling image", "starting", "ready"]


# ------------------------------------------------------------------ helpers

def route(stack, identity, pod=None, lock_ms=60000, pending_ms=600000):
    """The gateway's route call for `identity`: (session name, reply, request id)."""
    pod = pod or stack.pod_name(identity)
    request_id = uuid.uuid4().hex
    reply = stack.route(keys=stack.route_keys(pod),
                        args=[identity, pod, request_id, str(lock_ms), str(pending_ms), "1"])
    return pod, reply, request_id


def publish_creation(stack, identity, pod, request_id):
    stack.publish({"version": 1, "identity": identity, "pod": pod, "request_id": request_id,
                   "timestamp_ms": int(time.time() * 1000)})


def is_ready(pod):
    conditions = pod.status.conditions or []
    return pod.metadata.deletion_timestamp is None and pod.status.pod_ip and any(
        c.type == "Ready" and c.status == "True" for c in conditions)


def pool_pods(stack):
    """Pool pods, claimed or not, terminating or not."""
    return {name: pod for name, pod in stack.pods().items()
            if (pod.metadata.labels or {}).get(POOL_LABEL) == "true"}


def unclaimed_pool_pods(stack):
    """Pool pods no user is labelled on and not being deleted."""
    return {name: pod for name, pod in pool_pods(stack).items()
            if SESSION_LABEL not in (pod.metadata.labels or {}) and pod.metadata.deletion_timestamp is None}


def free_set(stack):
    return stack.redis.smembers(FREE)


def wait_pool_full(stack, controller, size, timeout=30):
    """Until `size` pool pods are free: Ready, unlabelled, in the free set
    with their address, and the leader's gauge says so. Returns the pods."""
    def full():
        pods = unclaimed_pool_pods(stack)
        free = free_set(stack)
        if (len(free) == size and set(pods) == free and all(is_ready(p) for p in pods.values())
                and controller.metric(METRIC + "pool_free") == size):
            return pods
        return None
    return wait_until(full, timeout=timeout, what=f"a pool of {size} free pods")


def identity_hash(identity):
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def read_pod(stack, name):
    try:
        return stack.core.read_namespaced_pod(name, USERS_NS)
    except kube_client.ApiException as error:
        if error.status == 404:
            return None
        raise


def gone_or_terminating(stack, name):
    pod = read_pod(stack, name)
    return pod is None or pod.metadata.deletion_timestamp is not None


# ----------------------------------------------------- a second, slower kube-sim

# Pods that ignore SIGTERM, to keep a deleted pod Terminating for its whole
# grace period; and the demo image as a process per pod (--demo-runtime
# process), whose container a test can kill -9.
AUX_IMAGES = {"images": {"stubborn-http": {"command": [
    "/bin/sh", "-c",
    "trap '' TERM; exec /usr/bin/python3 -m http.server {port} --bind {pod_ip} --directory {empty}"]}}}


@pytest.fixture(scope="module")
def aux_kube(tmp_path_factory):
    """kube-sim with slow scheduling (1 s unbound) and a slow start (1.5 s
    in ContainerCreating), demo pods as processes; the session's kube-sim is
    left as it is."""
    if ON_REAL_CLUSTER:
        pytest.skip("needs kube-sim's --schedule-delay, which the real scheduler does not have")
    directory = tmp_path_factory.mktemp("aux-kube-sim")
    empty = directory / "empty"
    empty.mkdir()
    images = directory / "images.json"
    images.write_text(json.dumps(AUX_IMAGES).replace("{empty}", str(empty)))
    cidr = f"127.58.{(os.getpid() % 16) * 16}.0/20"
    sim = KubeSim(directory, cidr, start_delay="1.5",
                  extra=("--schedule-delay", "1", "--demo-runtime", "process",
                         "--image-map", str(images)))
    apply_local_overlay(sim)
    yield sim
    sim.stop()


@pytest.fixture
def aux(stack, aux_kube, tmp_path):
    """A Stack on the slow kube-sim, sharing the session's Redis and broker
    (cleaned by the `stack` fixture)."""
    world = Stack(tmp_path / "aux", aux_kube, stack.redis_server, stack.rabbitmq)
    world.directory.mkdir()
    world.delete_all_pods()
    yield world
    world.stop()
    world.delete_all_pods()


# -------------------------------------------------------------------- tests

def test_the_pool_fills_to_its_size_and_stays_there(stack):
    controller = stack.controller(warm_pool_size=3).start()
    pods = wait_pool_full(stack, controller, 3, timeout=20)
    for name, pod in pods.items():
        assert POOL_NAME.match(name), name
        labels = pod.metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "pod-router"
        assert labels[POOL_LABEL] == "true"
        assert SESSION_LABEL not in labels and IDENTITY_HASH_LABEL not in labels
        assert IDENTITY_ANNOTATION not in (pod.metadata.annotations or {})
        # offered with its address, as route hands it out
        assert stack.redis.hget(ADDRESS, name) == f"{pod.status.pod_ip} 8080"
    assert stack.redis.scard(FREE) == 3
    assert stack.redis.get(TARGET) == "3"
    assert controller.metric(METRIC + "pool_target") == 3
    assert controller.metric(METRIC + "pool_pods_created_total") == 3
    assert stack.redis.hlen(CLAIMED) == 0 and stack.redis.llen(CLAIMS) == 0
    # no pool pod is a user's: no session, no activity, no event consumed
    assert not stack.redis.keys(f"{KEY_PREFIX}session:*")
    assert stack.redis.zcard(f"{KEY_PREFIX}activity") == 0

    # and it stays at 3: no overshoot, no churn
    names = set(pods)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert set(pool_pods(stack)) == names
        assert free_set(stack) == names
        time.sleep(0.25)
    assert controller.metric(METRIC + "pool_pods_created_total") == 3
    assert controller.metric(METRIC + "pool_free") == 3
    assert controller.metric(METRIC + "pool_starting") == 0
    assert 'pool_pods_lost_total{' not in controller.get("/metrics")[1]
    assert controller.metric(METRIC + "pool_refill_seconds_count") == 3


def test_a_new_user_claims_a_warm_pod_at_once_and_the_pool_refills(stack):
    controller = stack.controller(warm_pool_size=3).start()
    before = wait_pool_full(stack, controller, 3, timeout=20)

    session, reply, _ = route(stack, "alice")
    assert session == stack.pod_name("alice")
    assert reply[0] == "claimed", reply
    by_ip = {pod.status.pod_ip: name for name, pod in before.items()}
    assert reply[1] in by_ip and reply[2] == "8080", (reply, by_ip)
    claimed = by_ip[reply[1]]

    record = stack.session(session)
    assert record["state"] == "ready" and record["stage"] == "ready", record
    assert record["origin"] == "pool" and record["pod"] == claimed, record
    assert record["identity"] == "alice" and record["ip"] == reply[1] and record["port"] == "8080"
    assert claimed not in free_set(stack)
    assert stack.redis.hget(CLAIMED, claimed) == session
    assert stack.redis.hget(ADDRESS, claimed) is None
    assert stack.redis.zscore(f"{KEY_PREFIX}activity", session) is not None

    # the user's next request finds the same pod, ready
    assert route(stack, "alice")[1] == ["ready", reply[1], "8080"]

    # the controller labels the pod with its user
    def labelled():
        pod = read_pod(stack, claimed)
        return pod if pod and (pod.metadata.labels or {}).get(SESSION_LABEL) == session else None
    pod = wait_until(labelled, timeout=10, what="the claimed pod labelled")
    assert pod.metadata.uid == before[claimed].metadata.uid
    assert pod.metadata.labels[IDENTITY_HASH_LABEL] == identity_hash("alice")
    assert pod.metadata.annotations[IDENTITY_ANNOTATION] == "alice"
    assert pod.metadata.annotations.get(CLAIMED_AT_ANNOTATION)
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "pod-router"
    wait_until(lambda: controller.metric(METRIC + "pool_claims_total") == 1, what="the claim counted")
    assert stack.redis.llen(CLAIMS) == 0

    # and the pool is back to 3 free pods with one new one
    after = wait_pool_full(stack, controller, 3, timeout=20)
    assert claimed not in after
    assert len(set(after) - set(before)) == 1
    assert controller.metric(METRIC + "pool_pods_created_total") == 4
    # no creation event was needed: nothing published, nothing consumed,
    # no cold pod
    assert stack.queue_depth() == 0
    assert controller.metric(METRIC + "events_consumed_total") == 0
    assert controller.metric(METRIC + "pods_created_total") == 0
    assert session not in stack.pods()
    time.sleep(1)  # a couple more passes: counted once
    assert controller.metric(METRIC + "pool_claims_total") == 1
    assert stack.session(session)["pod"] == claimed


def test_100_new_users_at_once_against_a_pool_of_50(stack):
    controller = stack.controller(warm_pool_size=50, kube_qps=200, kube_burst=200).start()
    pool = wait_pool_full(stack, controller, 50, timeout=60)
    pool_ips = {pod.status.pod_ip: name for name, pod in pool.items()}

    identities = [f"crowd-{n}" for n in range(100)]
    sessions = {identity: stack.pod_name(identity) for identity in identities}
    replies = {}
    start = threading.Barrier(len(identities))

    def user(identity):
        start.wait(timeout=30)
        replies[identity] = route(stack, identity, pod=sessions[identity])

    threads = [threading.Thread(target=user, args=(identity,)) for identity in identities]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(replies) == 100

    claimed = {i: r for i, r in replies.items() if r[1][0] == "claimed"}
    cold = {i: r for i, r in replies.items() if r[1][0] == "create"}
    assert len(claimed) == 50 and len(cold) == 50, sorted(r[1][0] for r in replies.values())
    # the pool exists and was empty for the cold ones
    assert all(r[1] == ["create", "empty"] for r in cold.values()), cold
    # no pool pod given twice; each address is a pool pod's
    ips = [r[1][1] for r in claimed.values()]
    assert len(set(ips)) == 50 and set(ips) == set(pool_ips)
    claimed_pods = {stack.session(sessions[i])["pod"] for i in claimed}
    assert claimed_pods == set(pool)
    for identity, (session, reply, _) in claimed.items():
        record = stack.session(session)
        assert record["state"] == "ready" and record["origin"] == "pool", record
        assert pool_ips[reply[1]] == record["pod"]
    assert stack.redis.scard(FREE) == 0

    for identity, (session, _, request_id) in cold.items():
        assert stack.session(session)["state"] == "pending"
        publish_creation(stack, identity, session, request_id)
    for identity, (session, _, _) in cold.items():
        record = stack.wait_session(session, "ready", timeout=60)
        assert record["pod"] == session and record["origin"] == "cold", record

    records = [stack.session(sessions[i]) for i in identities]
    assert all(r["state"] == "ready" for r in records)
    assert len({r["pod"] for r in records}) == 100
    assert len({r["ip"] for r in records}) == 100
    wait_until(lambda: controller.metric(METRIC + "pool_claims_total") == 50, timeout=30,
               what="50 claims labelled")
    pods = stack.pods()
    for identity in claimed:
        record = stack.session(sessions[identity])
        assert pods[record["pod"]].metadata.labels[SESSION_LABEL] == sessions[identity]
    assert controller.metric(METRIC + "pods_created_total") == 50
    # and the pool refills with 50 new pods
    refilled = wait_pool_full(stack, controller, 50, timeout=60)
    assert not set(refilled) & set(pool)


def test_a_deleted_pool_pod_leaves_the_free_set_and_is_replaced(stack):
    controller = stack.controller(warm_pool_size=3).start()
    before = wait_pool_full(stack, controller, 3, timeout=20)
    victim = sorted(before)[0]
    stack.core.delete_namespaced_pod(victim, USERS_NS)
    wait_until(lambda: victim not in free_set(stack), timeout=5, what="the deleted pod out of the free set")
    wait_until(lambda: stack.redis.hget(ADDRESS, victim) is None, timeout=5, what="its address forgotten")
    after = wait_pool_full(stack, controller, 3, timeout=20)
    assert victim not in after
    assert set(before) - {victim} < set(after)
    assert controller.metric(METRIC + "pool_pods_created_total") == 4
    # nobody can claim it: the next new user gets one of the live pods
    session, reply, _ = route(stack, "after-delete")
    assert reply[0] == "claimed"
    assert stack.session(session)["pod"] in after


def test_the_sweep_repairs_what_redis_says_about_the_pool(stack):
    """A free pod the route script set aside for an unusable address is
    deleted; entries of pool pods deleted while no controller watched are
    forgotten; a free pod that fell out of the free set is offered again."""
    controller = stack.controller(warm_pool_size=1, warm_pool_sweep_interval="1s").start()
    set_aside = next(iter(wait_pool_full(stack, controller, 1, timeout=20)))
    stack.redis.hdel(ADDRESS, set_aside)
    assert route(stack, "sweep-user")[1] == ["create", "empty"]
    assert stack.redis.hget(CLAIMED, set_aside) == ""
    wait_until(lambda: gone_or_terminating(stack, set_aside), timeout=10, what="the set-aside pod deleted")
    refilled = wait_pool_full(stack, controller, 1, timeout=20)
    assert set_aside not in refilled

    ghost, ghost_claimed = "user--pool-0000000000aa", "user--pool-0000000000bb"
    stack.redis.sadd(FREE, ghost)
    stack.redis.hset(ADDRESS, ghost, "10.244.200.200 8080")
    stack.redis.hset(CLAIMED, ghost_claimed, "user-long-gone")
    wait_until(lambda: not stack.redis.sismember(FREE, ghost) and stack.redis.hget(ADDRESS, ghost) is None
               and stack.redis.hget(CLAIMED, ghost_claimed) is None, timeout=10,
               what="the entries of pods that do not exist forgotten")
    assert "forgot a pool pod that Redis listed and no longer exists" in controller.log_text()

    lost = next(iter(refilled))
    stack.redis.srem(FREE, lost)
    stack.redis.hdel(ADDRESS, lost)
    # (a replacement may start meanwhile; one of the two is then surplus)
    wait_until(lambda: stack.redis.sismember(FREE, lost) or gone_or_terminating(stack, lost), timeout=10,
               what="the lost free pod offered again")
    assert stack.redis.hget(ADDRESS, lost) is not None or gone_or_terminating(stack, lost)
    wait_pool_full(stack, controller, 1, timeout=20)


def test_a_pool_pod_whose_container_restarted_is_retired_and_replaced(aux):
    controller = aux.controller(warm_pool_size=2).start()
    before = wait_pool_full(aux, controller, 2, timeout=30)
    victim = sorted(before)[0]
    container_id = before[victim].status.container_statuses[0].container_id
    assert container_id.startswith("kube-sim://") and container_id[11:].isdigit(), container_id
    os.kill(int(container_id[11:]), signal.SIGKILL)  # the container's process dies: restarted
    wait_until(lambda: victim not in free_set(aux), timeout=5, what="the restarted pod out of the free set")
    wait_until(lambda: gone_or_terminating(aux, victim), timeout=10, what="the restarted pod deleted")
    wait_until(lambda: controller.metric(METRIC + "pool_pods_lost_total", '{reason="restarted"}') == 1,
               timeout=10, what="counted as lost")
    after = wait_pool_full(aux, controller, 2, timeout=30)
    assert victim not in after and set(before) - {victim} < set(after)
    assert controller.metric(METRIC + "pool_pods_created_total") == 3
    assert any(line.get("msg") == "pool pod removed" and line.get("pod") == victim
               and line.get("reason") == "restarted" for line in controller.log_lines())


def test_a_terminating_pool_pod_is_no_longer_offered(aux):
    """A free pod being deleted (by anyone: an operator, an eviction) must
    not be handed to a new user during its grace period."""
    template = aux.template(image="stubborn-http", name="stubborn.yaml")
    controller = aux.controller(template=template, warm_pool_size=2).start()
    before = wait_pool_full(aux, controller, 2, timeout=30)
    victim = sorted(before)[0]
    aux.core.delete_namespaced_pod(victim, USERS_NS, grace_period_seconds=8)
    pod = read_pod(aux, victim)
    assert pod is not None and pod.metadata.deletion_timestamp is not None
    time.sleep(1.5)  # three passes of the leader: time to take it out of the pool
    assert read_pod(aux, victim).metadata.deletion_timestamp is not None  # still terminating
    # two new users: with the victim still offered, one of them would get it
    given = []
    for n in range(2):
        session, reply, _ = route(aux, f"while-terminating-{n}")
        given.append((reply, aux.session(session).get("pod")))
    assert all(pod != victim for _, pod in given), \
        f"a new user was given {victim}, Terminating since its deletion 1.5 s before: {given}"
    assert victim not in free_set(aux)
    # and the pool does not wait for the end of the grace period to refill
    after = wait_pool_full(aux, controller, 2, timeout=15)
    assert victim not in after


def test_the_reaper_never_takes_a_free_pool_pod_but_reaps_a_claimed_one(stack):
    controller = stack.controller(warm_pool_size=2, idle_timeout="3s", reap_interval="1s").start()
    before = wait_pool_full(stack, controller, 2, timeout=20)
    uids = {name: pod.metadata.uid for name, pod in before.items()}

    deadline = time.monotonic() + 10  # more than three idle timeouts
    while time.monotonic() < deadline:
        now = {name: pod.metadata.uid for name, pod in pool_pods(stack).items()}
        assert now == uids, (now, uids)
        assert free_set(stack) == set(uids)
        time.sleep(0.5)
    assert controller.metric(METRIC + "pods_reaped_total") == 0
    assert controller.metric(METRIC + "pool_pods_created_total") == 2

    session, reply, _ = route(stack, "one-request")
    assert reply[0] == "claimed"
    claimed_at = time.monotonic()
    claimed = stack.session(session)["pod"]
    assert claimed in uids

    seen_free = []
    def reaped():
        if claimed in free_set(stack):
            seen_free.append(time.monotonic())
        return not stack.redis.exists(f"{KEY_PREFIX}session:{session}")
    wait_until(reaped, timeout=12, what="the claimed pod's session reaped")
    reaped_after = time.monotonic() - claimed_at
    assert reaped_after >= 2.5, reaped_after
    wait_until(lambda: gone_or_terminating(stack, claimed), timeout=5, what="the claimed pod deleted")
    wait_until(lambda: controller.metric(METRIC + "pods_reaped_total") == 1, what="the reap counted")

    other = (set(uids) - {claimed}).pop()
    def refilled():
        if claimed in free_set(stack):
            seen_free.append(time.monotonic())
        pods = unclaimed_pool_pods(stack)
        return len(pods) == 2 and free_set(stack) == set(pods) and pods
    after = wait_until(refilled, timeout=20, what="the pool refilled to 2")
    assert other in after and after[other].metadata.uid == uids[other]
    assert claimed not in after
    assert not seen_free, "the reaped claimed pod was back in the free set"
    wait_until(lambda: claimed not in stack.pods(), timeout=10, what="the claimed pod gone")
    wait_until(lambda: stack.redis.hget(CLAIMED, claimed) is None, timeout=5,
               what="the claim forgotten once the pod is deleted")
    assert claimed not in free_set(stack)
    assert controller.metric(METRIC + "pool_pods_created_total") == 3
    assert 'pool_pods_lost_total{' not in controller.get("/metrics")[1]  # a reap is no loss


def test_a_claimed_pod_not_yet_labelled_is_never_an_orphan(stack):
    flags = dict(warm_pool_size=2, orphan_grace="1s", reconcile_interval="1s")
    first = stack.controller("controller-a", **flags).start()
    before = wait_pool_full(stack, first, 2, timeout=20)
    assert first.stop() == 0

    # claimed while no controller runs: nobody labels it
    session, reply, _ = route(stack, "claimed-offline")
    assert reply[0] == "claimed"
    claimed = stack.session(session)["pod"]
    uid = before[claimed].metadata.uid
    assert stack.redis.lrange(CLAIMS, 0, -1) == [f"{claimed} {session}"]
    time.sleep(1.5)  # older than the orphan grace period
    assert SESSION_LABEL not in read_pod(stack, claimed).metadata.labels

    second = stack.controller("controller-b", **flags).start()
    wait_until(lambda: second.metric(METRIC + "leader") == 1, timeout=20, what="leadership")

    def labelled():
        pod = read_pod(stack, claimed)
        assert pod is not None and pod.metadata.deletion_timestamp is None, \
            f"the claimed pod {claimed} was deleted"
        return (pod.metadata.labels or {}).get(SESSION_LABEL) == session and pod
    pod = wait_until(labelled, timeout=10, what="the claimed pod labelled")
    assert pod.metadata.uid == uid
    assert pod.metadata.annotations[IDENTITY_ANNOTATION] == "claimed-offline"
    time.sleep(3)  # several reconcile passes with the pod labelled
    pod = read_pod(stack, claimed)
    assert pod is not None and pod.metadata.deletion_timestamp is None and pod.metadata.uid == uid
    record = stack.session(session)
    assert record["state"] == "ready" and record["pod"] == claimed
    assert second.metric(METRIC + "reconcile_fixes_total", '{kind="orphan_pod"}') == 0
    assert second.metric(METRIC + "reconcile_fixes_total", '{kind="stale_session"}') == 0
    after = wait_pool_full(stack, second, 2, timeout=20)
    assert claimed not in after
    assert stack.redis.llen(CLAIMS) == 0
    # one claim, labelled once
    assert second.metric(METRIC + "pool_claims_total") == 1


def test_spawn_stages_of_a_cold_creation_in_order(aux):
    controller = aux.controller(template=aux.template(ready_delay=2)).start()
    wait_until(lambda: controller.metric(METRIC + "leader") == 1, timeout=20, what="leadership")
    assert aux.redis.get(TARGET) is None  # no pool
    identity = "slow-starter"
    session, reply, request_id = route(aux, identity)
    assert reply == ["create", "off"], reply
    seen = []

    def record():
        stage = aux.redis.hget(f"{KEY_PREFIX}session:{session}", "stage")
        if stage and (not seen or seen[-1][0] != stage):
            seen.append((stage, time.monotonic()))
        return stage

    record()
    publish_creation(aux, identity, session, request_id)
    pending_reply = None
    deadline = time.monotonic() + 30
    while record() not in ("ready", "failed"):
        assert time.monotonic() < deadline, f"not ready in 30 s; stages {seen}"
        if pending_reply is None and seen[-1][0] == "pulling image":
            # the gateway's waiting requests hear the stage from route
            pending_reply = route(aux, identity, pod=session)[1]
        time.sleep(0.05)
    stages = [stage for stage, _ in seen]
    assert stages[-1] == "ready", stages
    assert all(stage in STAGES for stage in stages), stages
    ranks = [STAGES.index(stage) for stage in stages]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks), f"out of order: {stages}"
    for needed in ("creating", "pulling image", "starting", "ready"):
        assert needed in stages, f"{needed} never seen: {stages}"
    at = dict(seen)
    # unbound for --schedule-delay 1 s: "creating" is shown for about that long
    assert at["pulling image"] - at["creating"] >= 0.7, seen
    assert pending_reply in (["pending", "pulling image"], ["pending", "starting"]), pending_reply
    assert aux.session(session)["state"] == "ready"


def test_a_bad_image_ends_failed_with_the_failed_stage(stack):
    stack.controller(template=stack.template(image="registry.invalid/nothing:1")).start()
    identity = "bad-image-user"
    session, reply, request_id = route(stack, identity)
    assert reply[0] == "create", reply
    publish_creation(stack, identity, session, request_id)
    record = stack.wait_session(session, "failed", timeout=10)
    assert record["stage"] == "failed", record
    assert "ErrImagePull" in record["reason"] or "ImagePullBackOff" in record["reason"], record
    assert "ip" not in record
    # and route reports the failure to the waiting user
    assert route(stack, identity, pod=session)[1][0] == "failed"


def test_a_cold_pod_of_a_user_who_claimed_a_warm_one_meanwhile_is_deleted(stack):
    """A user's pending session expires while its creation event waits; the
    user comes back and claims a warm pod. An event handled after the claim
    is only acknowledged; a cold pod created before it is nobody's once
    ready (mark_ready answers superseded) and is deleted."""
    early, late = "event-after-claim", "claim-during-creation"
    # no controller yet, no pool: the gateway takes the lock for each user;
    # the sessions and locks expire before the events are handled
    replies = {identity: route(stack, identity, lock_ms=300, pending_ms=300)
               for identity in (early, late)}
    assert all(r[1] == ["create", "off"] for r in replies.values()), replies
    controller = stack.controller(warm_pool_size=2, template=stack.template(ready_delay=3)).start()
    wait_pool_full(stack, controller, 2, timeout=30)
    for session, _, _ in replies.values():
        assert not stack.redis.exists(f"{KEY_PREFIX}session:{session}")

    # the claim first, then the event: acknowledged, no cold pod
    session, _, old_request = replies[early]
    assert route(stack, early)[1][0] == "claimed"
    publish_creation(stack, early, session, old_request)
    wait_until(lambda: stack.queue_depth() == 0 and
               controller.metric(METRIC + "events_acked_total") == 1, what="the late event acked")
    # the event first (the cold pod is being created), then the claim
    session, _, old_request = replies[late]
    publish_creation(stack, late, session, old_request)
    wait_until(lambda: session in stack.pods(), timeout=10, what="the cold pod created")
    assert route(stack, late)[1][0] == "claimed"
    warm = stack.session(session)["pod"]
    assert warm != session
    wait_until(lambda: any(line.get("msg") == "deleting a cold pod: its user claimed a warm one meanwhile"
                           and line.get("pod") == session for line in controller.log_lines()),
               timeout=15, what="the superseded cold pod deleted")
    wait_until(lambda: session not in stack.pods(), timeout=10, what="the cold pod gone")
    assert controller.metric(METRIC + "pods_created_total") == 1  # only the superseded one
    assert stack.pod_name(early) not in stack.pods()
    for identity in (early, late):
        record = stack.session(stack.pod_name(identity))
        assert record["state"] == "ready" and record["origin"] == "pool", record
        assert route(stack, identity)[1] == ["ready", record["ip"], "8080"]
        pod = stack.pods()[record["pod"]]
        assert pod.metadata.deletion_timestamp is None
        assert pod.status.pod_ip == record["ip"]
    wait_until(lambda: stack.queue_depth() == 0, what="the events acked")


def test_a_smaller_pool_after_a_restart_retires_the_surplus(stack):
    first = stack.controller("controller-a", warm_pool_size=3).start()
    before = wait_pool_full(stack, first, 3, timeout=20)
    assert first.stop() == 0

    second = stack.controller("controller-b", warm_pool_size=1).start()
    kept = wait_pool_full(stack, second, 1, timeout=20)
    assert set(kept) < set(before)
    assert stack.redis.get(TARGET) == "1"
    wait_until(lambda: second.metric(METRIC + "pool_pods_lost_total", '{reason="surplus"}') == 2,
               what="2 surplus pods counted")
    assert second.metric(METRIC + "pool_pods_created_total") == 0
    wait_until(lambda: set(pool_pods(stack)) == set(kept), timeout=10, what="the surplus deleted")
    assert second.stop() == 0

    # no pool at all: the last free pod goes, and new users are created cold
    third = stack.controller("controller-c", warm_pool_size=0).start()
    wait_until(lambda: not pool_pods(stack) and stack.redis.scard(FREE) == 0, timeout=20,
               what="the pool emptied")
    assert stack.redis.get(TARGET) is None
    assert third.metric(METRIC + "pool_target") == 0
    assert route(stack, "no-pool-user")[1] == ["create", "off"]
