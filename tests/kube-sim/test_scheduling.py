"""--schedule-delay: a new pod waits unbound, as for the scheduler, then is
bound (spec.nodeName and PodScheduled=True in one write) and only then does
--start-delay begin: unbound -> scheduled -> ContainerCreating -> running ->
Ready, each a separate write a watcher sees."""

import json

import pytest

from cluster import KubeSim, pod_manifest, wait_for
from kubesim import server

NAMESPACE = "scheduling-test"
SCHEDULE_DELAY_MS = 600
START_DELAY_MS = 400
INITIAL_DELAY_S = 1


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def moments(path, uid):
    """{event: at_ms} of one pod's --pod-timeline lines (the first of each)."""
    found = {}
    for line in read_lines(path):
        if line["uid"] == uid:
            found.setdefault(line["event"], line["at_ms"])
    return found


def conditions_of(pod):
    return {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}


def stage(pod):
    """Where a pod is in its start-up, from one stored version of it."""
    status = pod.get("status") or {}
    conditions = conditions_of(pod)
    containers = status.get("containerStatuses") or []
    if not pod["spec"].get("nodeName"):
        assert not conditions and not containers and status.get("phase") == "Pending", status
        return "unbound"
    if not conditions:
        return "assigned"  # created with spec.nodeName: the kubelet has not written yet
    assert conditions["PodScheduled"]["status"] == "True", status
    if not containers:
        return "scheduled"
    if conditions.get("Ready", {}).get("status") == "True":
        return "ready"
    state = containers[0]["state"]
    if "waiting" in state:
        assert state["waiting"]["reason"] == "ContainerCreating" and status["phase"] == "Pending", status
        return "creating"
    assert "running" in state and status["phase"] == "Running", status
    return "running"


def collapse(stages):
    return [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]]


@pytest.fixture(scope="module")
def slow_scheduler(tmp_path_factory):
    state = tmp_path_factory.mktemp("slow-scheduler")
    sim = KubeSim(state, "--schedule-delay", str(SCHEDULE_DELAY_MS / 1000),
                  "--start-delay", str(START_DELAY_MS / 1000), "--pod-timeline", str(state / "timeline.jsonl"))
    sim.timeline = state / "timeline.jsonl"
    status, body = sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    assert status == 201, body
    yield sim
    assert sim.stop() == 0, sim.log_path.read_text()[-3000:]


def pods_path(name=""):
    return f"/api/v1/namespaces/{NAMESPACE}/pods" + (f"/{name}" if name else "")


def test_a_pod_goes_unbound_scheduled_creating_running_ready(slow_scheduler):
    sim = slow_scheduler
    _, listed = sim.request("GET", pods_path())
    since = listed["metadata"]["resourceVersion"]
    manifest = pod_manifest("staged")
    manifest["spec"]["containers"][0]["readinessProbe"]["initialDelaySeconds"] = INITIAL_DELAY_S
    status, created = sim.request("POST", pods_path(), manifest)
    assert status == 201, created
    uid = created["metadata"]["uid"]

    # Waiting for the scheduler: as a real pod in the scheduling queue looks.
    _, pending = sim.request("GET", pods_path("staged"))
    assert stage(pending) == "unbound"
    assert "nodeName" not in pending["spec"] and "podIP" not in pending["status"]

    wait_for(lambda: stage(sim.request("GET", pods_path("staged"))[1]) == "ready", what="the pod Ready")
    events = sim.watch(pods_path() + f"?watch=true&resourceVersion={since}&timeoutSeconds=1")
    versions = [e["object"] for e in events if e["object"]["metadata"]["name"] == "staged"]
    assert [e["type"] for e in events][0] == "ADDED"
    assert collapse([stage(pod) for pod in versions]) == ["unbound", "scheduled", "creating", "running", "ready"]

    # The binding write: nodeName and PodScheduled, nothing of the kubelet's yet.
    binding = next(pod for pod in versions if stage(pod) == "scheduled")
    assert binding["spec"]["nodeName"] == "kube-sim-node"
    assert list(conditions_of(binding)) == ["PodScheduled"]
    scheduled = conditions_of(binding)["PodScheduled"]
    assert scheduled["lastProbeTime"] is None and scheduled["lastTransitionTime"]
    assert binding["status"]["phase"] == "Pending"
    assert not {"podIP", "hostIP", "startTime", "containerStatuses"} & set(binding["status"])
    # The kubelet keeps the scheduler's condition as it was.
    _, ready = sim.request("GET", pods_path("staged"))
    assert conditions_of(ready)["PodScheduled"] == scheduled
    assert ready["status"]["startTime"] and ready["status"]["podIP"]

    # Events in the store's order, around the writes they describe.
    _, listed_events = sim.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name%3Dstaged")
    ordered = sorted(listed_events["items"], key=lambda e: int(e["metadata"]["resourceVersion"]))
    assert [e["reason"] for e in ordered] == ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    assert ordered[0]["source"]["component"] == "default-scheduler"
    assert ordered[0]["message"] == f"Successfully assigned {NAMESPACE}/staged to kube-sim-node"
    version = {stage(pod): int(pod["metadata"]["resourceVersion"]) for pod in reversed(versions)}
    event_version = {e["reason"]: int(e["metadata"]["resourceVersion"]) for e in ordered}
    assert version["scheduled"] < event_version["Scheduled"] < event_version["Pulling"] < version["creating"]
    assert version["creating"] < event_version["Pulled"] < event_version["Started"] < version["running"]

    # The delays, each counted from the stage before it.
    at = moments(sim.timeline, uid)
    assert list(at) == ["created", "scheduled", "running", "ready"]
    assert SCHEDULE_DELAY_MS <= at["scheduled"] - at["created"] < SCHEDULE_DELAY_MS + 1000
    assert START_DELAY_MS <= at["running"] - at["scheduled"] < START_DELAY_MS + 1000
    assert INITIAL_DELAY_S * 1000 <= at["ready"] - at["running"] < INITIAL_DELAY_S * 1000 + 2000


def test_an_unbound_pod_is_deleted_at_once_and_never_runs(slow_scheduler):
    sim = slow_scheduler
    status, created = sim.request("POST", pods_path(), pod_manifest("short-lived", probe=False))
    assert status == 201
    uid = created["metadata"]["uid"]
    status, body = sim.request("DELETE", pods_path("short-lived"))
    assert status == 200, body
    assert sim.request("GET", pods_path("short-lived"))[0] == 404

    # The same name again, deleted and made again while the first would have been due.
    status, again = sim.request("POST", pods_path(), pod_manifest("short-lived", probe=False))
    assert status == 201
    wait_for(lambda: stage(sim.request("GET", pods_path("short-lived"))[1]) == "ready", what="the new pod")
    _, pod = sim.request("GET", pods_path("short-lived"))
    assert pod["metadata"]["uid"] == again["metadata"]["uid"]
    assert [line["event"] for line in read_lines(sim.timeline) if line["uid"] == uid] == ["created", "deleted"]
    _, events = sim.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events"
                                   "?fieldSelector=involvedObject.name%3Dshort-lived")
    assert {e["involvedObject"]["uid"] for e in events["items"]} == {again["metadata"]["uid"]}
    assert sim.request("DELETE", pods_path("short-lived") + "?gracePeriodSeconds=0")[0] == 200
    wait_for(lambda: sim.request("GET", pods_path("short-lived"))[0] == 404, what="deletion")


def test_deleting_the_namespace_takes_unbound_pods(slow_scheduler):
    sim = slow_scheduler
    assert sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})[0] == 201
    path = "/api/v1/namespaces/doomed/pods"
    assert sim.request("POST", path, pod_manifest("queued", probe=False))[0] == 201
    assert sim.request("DELETE", "/api/v1/namespaces/doomed")[0] == 200
    wait_for(lambda: sim.request("GET", "/api/v1/namespaces/doomed")[0] == 404, what="the namespace gone")
    assert sim.request("GET", f"{path}/queued")[0] == 404


def test_a_pod_created_with_a_node_name_skips_the_scheduler(slow_scheduler):
    sim = slow_scheduler
    status, created = sim.request("POST", pods_path(),
                                  pod_manifest("pinned", probe=False, nodeName="kube-sim-node"))
    assert status == 201, created
    wait_for(lambda: stage(sim.request("GET", pods_path("pinned"))[1]) == "ready", what="pinned Ready")
    at = moments(sim.timeline, created["metadata"]["uid"])
    assert at["scheduled"] == at["created"]
    assert at["running"] - at["created"] < SCHEDULE_DELAY_MS + START_DELAY_MS
    _, events = sim.request("GET", f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name%3Dpinned")
    assert "Scheduled" not in [e["reason"] for e in events["items"]]


def test_without_a_delay_the_binding_is_still_its_own_write(cluster):
    namespace = "scheduling-now"
    assert cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})[0] == 201
    path = f"/api/v1/namespaces/{namespace}/pods"
    since = cluster.request("GET", path)[1]["metadata"]["resourceVersion"]
    assert cluster.request("POST", path, pod_manifest("prompt"))[0] == 201
    wait_for(lambda: stage(cluster.request("GET", f"{path}/prompt")[1]) == "ready", what="Ready")
    events = cluster.watch(f"{path}?watch=true&resourceVersion={since}&timeoutSeconds=1")
    assert collapse([stage(e["object"]) for e in events]) == ["unbound", "scheduled", "creating", "running",
                                                             "ready"]
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}")


def test_schedule_jitter_spreads_the_bindings(tmp_path):
    timeline = tmp_path / "timeline.jsonl"
    sim = KubeSim(tmp_path / "state", "--schedule-delay", "0.1", "--schedule-jitter", "1",
                  "--start-delay", "0", "--pod-timeline", str(timeline))
    try:
        pods = "/api/v1/namespaces/default/pods"
        uids = [sim.request("POST", pods, pod_manifest(f"spread-{n}", probe=False))[1]["metadata"]["uid"]
                for n in range(8)]

        def all_running():
            found = [moments(timeline, uid) for uid in uids]
            return found if all("running" in m for m in found) else None

        every = wait_for(all_running, what="eight pods running")
    finally:
        assert sim.stop() == 0, sim.log_path.read_text()[-3000:]
    delays = [m["scheduled"] - m["created"] for m in every]
    # All eight within 200 ms of each other has odds near 1e-5.
    assert all(100 <= delay < 1100 + 500 for delay in delays), delays
    assert max(delays) - min(delays) > 200, delays
    assert all(m["running"] >= m["scheduled"] for m in every)


@pytest.mark.parametrize("flag", ["--schedule-delay", "--schedule-jitter"])
def test_a_negative_delay_is_refused(flag, capsys):
    with pytest.raises(SystemExit) as exited:
        server.parse_args(["--state-dir", "/nonexistent", flag, "-1"])
    assert exited.value.code == 2
    assert f"{flag} must not be negative" in capsys.readouterr().err


def test_help_describes_the_scheduling_flags(capsys):
    with pytest.raises(SystemExit):
        server.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--schedule-delay SECONDS" in text and "--schedule-jitter SECONDS" in text
    assert "seconds from binding to container start" in text


def test_a_pod_with_a_node_name_deleted_at_once_still_goes(slow_scheduler):
    sim = slow_scheduler
    manifest = pod_manifest("pinned-brief", probe=False, nodeName="kube-sim-node")
    assert sim.request("POST", pods_path(), manifest)[0] == 201
    status, body = sim.request("DELETE", pods_path("pinned-brief") + "?gracePeriodSeconds=0")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    wait_for(lambda: sim.request("GET", pods_path("pinned-brief"))[0] == 404, what="deletion")
