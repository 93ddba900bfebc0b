"""The kubelet stand-in: container states and reasons as a node reports them,
readiness from probes, restarts, logs, and real processes stopped for real."""

import os
import signal
import urllib.request

import pytest

from cluster import KubeSim, pod_manifest, wait_for

NAMESPACE = "kubelet-test"


@pytest.fixture(scope="module")
def namespace(cluster):
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")


def create(cluster, manifest):
    status, body = cluster.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", manifest)
    assert status == 201, body
    return body


def pod(cluster, name):
    status, body = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
    assert status == 200, body
    return body


def container_status(cluster, name):
    statuses = pod(cluster, name)["status"].get("containerStatuses") or [{}]
    return statuses[0]


def waiting_reason(cluster, name):
    return container_status(cluster, name).get("state", {}).get("waiting", {}).get("reason")


def test_unknown_image_fails_to_pull_then_backs_off(cluster, namespace):
    create(cluster, pod_manifest("no-image", image="registry.example/nope:1", probe=False))
    wait_for(lambda: waiting_reason(cluster, "no-image") == "ErrImagePull", what="ErrImagePull")
    wait_for(lambda: waiting_reason(cluster, "no-image") == "ImagePullBackOff", timeout=15,
             what="ImagePullBackOff")
    body = pod(cluster, "no-image")
    assert body["status"]["phase"] == "Pending"
    assert 'Back-off pulling image "registry.example/nope:1"' in \
        body["status"]["containerStatuses"][0]["state"]["waiting"]["message"]


def test_a_crashing_container_goes_into_crash_loop_back_off(cluster, namespace):
    create(cluster, pod_manifest("crasher", image="crasher", probe=False))
    wait_for(lambda: container_status(cluster, "crasher").get("restartCount", 0) >= 2, what="two restarts")
    wait_for(lambda: waiting_reason(cluster, "crasher") == "CrashLoopBackOff", what="CrashLoopBackOff")
    status = container_status(cluster, "crasher")
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert pod(cluster, "crasher")["status"]["phase"] == "Running"
    text = cluster.kubectl("get", "pod", "crasher", "-n", NAMESPACE).stdout
    assert "CrashLoopBackOff" in text
    logs = cluster.kubectl("logs", "crasher", "-n", NAMESPACE).stdout
    assert "crashing" in logs


def test_restart_policy_never_ends_in_failed(cluster, namespace):
    create(cluster, pod_manifest("once", image="crasher", probe=False, restartPolicy="Never"))
    wait_for(lambda: pod(cluster, "once")["status"]["phase"] == "Failed", what="phase Failed")
    terminated = container_status(cluster, "once")["state"]["terminated"]
    assert terminated["exitCode"] == 3 and container_status(cluster, "once")["restartCount"] == 0


def test_readiness_gates_ready_and_a_killed_process_is_a_terminated_container(cluster, namespace):
    create(cluster, pod_manifest("real-process", image="python-http", port=8080))
    wait_for(lambda: container_status(cluster, "real-process").get("ready"), what="ready")
    ip = pod(cluster, "real-process")["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as reply:
        assert reply.status == 200

    pid = int(container_status(cluster, "real-process")["containerID"].rsplit("/", 1)[-1])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: container_status(cluster, "real-process").get("restartCount") == 1, what="a restart")
    last = container_status(cluster, "real-process")["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    wait_for(lambda: container_status(cluster, "real-process").get("ready"), what="ready again")
    new_pid = int(container_status(cluster, "real-process")["containerID"].rsplit("/", 1)[-1])
    assert new_pid != pid


def test_a_failing_readiness_probe_keeps_the_pod_unready(cluster, namespace):
    manifest = pod_manifest("never-ready", image="python-http", port=8080)
    manifest["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 9}, "periodSeconds": 1}
    create(cluster, manifest)
    wait_for(lambda: "running" in container_status(cluster, "never-ready").get("state", {}), what="running")
    wait_for(lambda: any(e["reason"] == "Unhealthy" for e in cluster.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name%3Dnever-ready")[1]["items"]),
        what="an Unhealthy event")
    ready = next(c for c in pod(cluster, "never-ready")["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [web]"


def test_each_pod_gets_its_own_address(cluster, namespace):
    for name in ("addr-a", "addr-b"):
        create(cluster, pod_manifest(name))
    for name in ("addr-a", "addr-b"):
        wait_for(lambda name=name: container_status(cluster, name).get("ready"), what=f"{name} ready")
    ips = {pod(cluster, name)["status"]["podIP"] for name in ("addr-a", "addr-b")}
    assert len(ips) == 2
    for name in ("addr-a", "addr-b"):
        ip = pod(cluster, name)["status"]["podIP"]
        with urllib.request.urlopen(f"http://{ip}/", timeout=5) as reply:
            assert reply.headers["X-Pod-Name"] == name


def test_stopping_kube_sim_stops_every_pod_process(tmp_path):
    sim = KubeSim(tmp_path / "stop-test", "--demo-runtime", "process")
    try:
        for name, image in (("web", "httpd"), ("stubborn", "stubborn")):
            status, _ = sim.request("POST", "/api/v1/namespaces/default/pods",
                                    pod_manifest(name, image=image, probe=False, grace=1))
            assert status == 201
        pids = wait_for(lambda: _running_pids(sim, ("web", "stubborn")), what="both running")
    finally:
        assert sim.stop() == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def _running_pids(sim, names):
    pids = []
    for name in names:
        _, body = sim.request("GET", f"/api/v1/namespaces/default/pods/{name}")
        statuses = body.get("status", {}).get("containerStatuses") or []
        if not statuses or "running" not in statuses[0]["state"]:
            return None
        pids.append(int(statuses[0]["containerID"].rsplit("/", 1)[-1]))
    return pids


def test_a_failing_liveness_probe_restarts_the_container(cluster, namespace):
    manifest = pod_manifest("not-alive", image="python-http", port=8080, probe=False)
    manifest["spec"]["containers"][0]["livenessProbe"] = {
        "httpGet": {"path": "/", "port": 9}, "periodSeconds": 1, "failureThreshold": 2}
    create(cluster, manifest)
    wait_for(lambda: container_status(cluster, "not-alive").get("restartCount", 0) >= 1, timeout=30,
             what="a liveness restart")
    assert container_status(cluster, "not-alive")["lastState"]["terminated"]["exitCode"] == 137
