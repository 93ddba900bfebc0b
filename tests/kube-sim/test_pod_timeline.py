"""--pod-timeline: a pod's lifecycle moments in milliseconds, as JSON lines
written while kube-sim runs."""

import calendar
import json
import time

from cluster import KubeSim, pod_manifest, wait_for
from kubesim import resources
from kubesim.store import Store
from kubesim.timeline import PodTimeline

NAMESPACE = "timeline-test"
START_DELAY_MS = 300


def read_lines(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_of(path, uid):
    return [line for line in read_lines(path) if line["uid"] == uid]


def test_created_running_ready_deleted_in_milliseconds(tmp_path):
    timeline = tmp_path / "timeline.jsonl"
    sim = KubeSim(tmp_path / "state", "--start-delay", str(START_DELAY_MS / 1000),
                  "--pod-timeline", str(timeline))
    try:
        status, body = sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        assert status == 201, body
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        status, created = sim.request("POST", pods, pod_manifest("timed"))
        assert status == 201, created
        uid = created["metadata"]["uid"]

        def ready():
            conditions = sim.request("GET", f"{pods}/timed")[1].get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_for(ready, what="the pod Ready")
        # Written at once: the ready line is there as soon as the API shows Ready.
        assert [line["event"] for line in events_of(timeline, uid)] == ["created", "scheduled", "running", "ready"]

        status, body = sim.request("DELETE", f"{pods}/timed?gracePeriodSeconds=0")
        assert status == 200, body
        # Read while kube-sim still runs: each line is flushed as it happens.
        wait_for(lambda: "deleted" in [line["event"] for line in events_of(timeline, uid)],
                 what="the deleted line")
    finally:
        assert sim.stop() == 0, sim.log_path.read_text()[-3000:]

    lines = events_of(timeline, uid)
    assert [line["event"] for line in lines] == [
        "created", "scheduled", "running", "ready", "terminating", "unready", "deleted"]
    for line in lines:
        assert list(line) == ["at_ms", "event", "namespace", "name", "uid"]
        assert (line["namespace"], line["name"]) == (NAMESPACE, "timed")
        assert isinstance(line["at_ms"], float)
    at = {line["event"]: line["at_ms"] for line in lines}
    assert at["created"] <= at["scheduled"] < at["running"] <= at["ready"] < at["deleted"]
    # No --schedule-delay: bound at once, and --start-delay counts from there.
    assert at["scheduled"] - at["created"] < START_DELAY_MS
    assert START_DELAY_MS <= at["running"] - at["scheduled"]
    assert at["ready"] <= at["terminating"] <= at["unready"] <= at["deleted"]
    assert START_DELAY_MS <= at["ready"] - at["created"] < 5000
    # Wall-clock milliseconds since the epoch, near the pod's creationTimestamp.
    stamp = calendar.timegm(time.strptime(created["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    assert stamp <= at["created"] / 1000 < stamp + 1.1


def test_start_jitter_spreads_pod_starts(tmp_path):
    # Eight pods started together: with 1 s of jitter their start times
    # spread (all eight within 200 ms of each other has odds near 1e-5),
    # and none starts before the fixed delay or after delay + jitter.
    timeline = tmp_path / "timeline.jsonl"
    sim = KubeSim(tmp_path / "state", "--start-delay", "0.1", "--start-jitter", "1",
                  "--pod-timeline", str(timeline))
    try:
        assert sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})[0] == 201
        pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
        for n in range(8):
            assert sim.request("POST", pods, pod_manifest(f"jitter-{n}", probe=False))[0] == 201

        def started():
            moments = {}
            for line in read_lines(timeline):
                moments.setdefault(line["name"], {}).setdefault(line["event"], line["at_ms"])
            return moments if all("running" in m for m in moments.values()) and len(moments) == 8 else None

        moments = wait_for(started, what="eight pods running")
    finally:
        assert sim.stop() == 0, sim.log_path.read_text()[-3000:]
    delays = [m["running"] - m["created"] for m in moments.values()]
    assert all(100 <= delay < 1100 + 500 for delay in delays), delays
    assert max(delays) - min(delays) > 200, delays


def test_without_the_flag_no_timeline_is_written(cluster):
    status, body = cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE + "-off"}})
    assert status == 201, body
    pods = f"/api/v1/namespaces/{NAMESPACE}-off/pods"
    assert cluster.request("POST", pods, pod_manifest("untimed", probe=False))[0] == 201
    wait_for(lambda: cluster.request("GET", f"{pods}/untimed")[1].get("status", {}).get("phase") == "Running",
             what="the pod running")
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}-off")
    assert "--pod-timeline" not in cluster.process.args
    written = [p.name for p in cluster.state_dir.rglob("*") if p.is_file()
               and ("timeline" in p.name or p.suffix in (".jsonl", ".ndjson"))]
    assert written == []


def pod_object(name, running=False, ready=False):
    status = {"phase": "Running" if running else "Pending",
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
              "containerStatuses": [{"name": "web", "state": {"running": {}} if running else
                                     {"waiting": {"reason": "ContainerCreating"}}}]}
    return {"metadata": {"name": name}, "spec": {"containers": []}, "status": status}


def test_ready_again_after_unready_is_another_ready_line(tmp_path):
    path = tmp_path / "timeline.jsonl"
    timeline = PodTimeline(path)
    store = Store(observer=timeline.observe)
    pods = resources.pods()
    store.create(resources.namespaces(), "", {"metadata": {"name": "ns"}})
    uid = store.create(pods, "ns", pod_object("flappy"))["metadata"]["uid"]

    def set_status(running, ready):
        def mutate(pod):
            pod["status"] = pod_object("flappy", running, ready)["status"]
        store.update(pods, "ns", "flappy", mutate)

    set_status(True, False)
    set_status(True, True)
    set_status(True, True)  # unchanged: no line
    set_status(True, False)
    set_status(False, False)  # the container exited
    set_status(True, False)  # and was restarted
    set_status(True, True)
    store.update(pods, "ns", "flappy", lambda pod: pod["metadata"].update(labels={"a": "b"}))
    store.remove(pods, "ns", "flappy")
    store.create(resources.events(), "ns", {"metadata": {"name": "not-a-pod"}})
    timeline.close()
    lines = read_lines(path)
    assert {line["uid"] for line in lines} == {uid}
    assert [line["event"] for line in lines] == [
        "created", "running", "ready", "unready", "running", "ready", "deleted"]
    times = [line["at_ms"] for line in lines]
    assert times == sorted(times)
