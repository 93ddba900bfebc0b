"""kube-sim driven by the unmodified kubectl 1.32 on the machine, validation on."""

import json
import subprocess
import urllib.request

import pytest

from cluster import KUBECTL, pod_manifest, wait_for

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: kubectl-test
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: kubectl-test
  labels: {app: web}
spec:
  containers:
  - name: web
    image: httpd:2.4
    ports: [{containerPort: 80}]
    readinessProbe:
      httpGet: {path: /, port: 80}
      periodSeconds: 1
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: leader
  namespace: kubectl-test
spec:
  holderIdentity: someone
  leaseDurationSeconds: 15
"""


@pytest.fixture(scope="module")
def applied(cluster):
    result = cluster.kubectl("apply", "-f", "-", input=MANIFEST)
    yield result
    cluster.kubectl("delete", "namespace", "kubectl-test", "--wait=false", check=False)


def test_apply_creates_each_object_with_validation_on(applied):
    assert "namespace/kubectl-test created" in applied.stdout
    assert "pod/web-1 created" in applied.stdout
    assert "lease.coordination.k8s.io/leader created" in applied.stdout
    assert "failed to download openapi" not in applied.stderr


def test_wait_for_ready_then_the_pod_answers_on_its_own_address(cluster, applied):
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web-1", "-n", "kubectl-test", "--timeout=30s")
    ip = cluster.kubectl("get", "pod", "web-1", "-n", "kubectl-test", "-o", "jsonpath={.status.podIP}").stdout
    assert cluster.owns_address(ip)
    with urllib.request.urlopen(f"http://{ip}/", timeout=5) as reply:
        assert reply.headers["X-Pod-Name"] == "web-1"
        assert b"It works!" in reply.read()


def test_get_shows_kubectls_usual_columns(cluster, applied):
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web-1", "-n", "kubectl-test", "--timeout=30s")
    table = cluster.kubectl("get", "pods", "-n", "kubectl-test", "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert row.split()[:4] == ["web-1", "1/1", "Running", "0"]
    assert row.split()[6] == "kube-sim-node"
    by_label = cluster.kubectl("get", "pods", "-A", "-l", "app=web", "-o", "name").stdout.split()
    assert by_label == ["pod/web-1"]


def test_reapply_patches_and_unchanged_is_unchanged(cluster, applied):
    again = cluster.kubectl("apply", "-f", "-", input=MANIFEST)
    assert "pod/web-1 unchanged" in again.stdout
    changed = cluster.kubectl("apply", "-f", "-", input=MANIFEST.replace("holderIdentity: someone",
                                                                             "holderIdentity: another"))
    assert "lease.coordination.k8s.io/leader configured" in changed.stdout
    holder = cluster.kubectl("get", "lease", "leader", "-n", "kubectl-test",
                             "-o", "jsonpath={.spec.holderIdentity}").stdout
    assert holder == "another"
    labelled = cluster.kubectl("apply", "-f", "-", input=MANIFEST.replace("{app: web}", "{app: web, tier: a}"))
    assert "pod/web-1 configured" in labelled.stdout
    labels = json.loads(cluster.kubectl("get", "pod", "web-1", "-n", "kubectl-test",
                                        "-o", "jsonpath={.metadata.labels}").stdout)
    assert labels == {"app": "web", "tier": "a"}


def test_describe_shows_the_kubelets_events(cluster, applied):
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web-1", "-n", "kubectl-test", "--timeout=30s")
    text = " ".join(cluster.kubectl("describe", "pod", "web-1", "-n", "kubectl-test").stdout.split())
    for expected in ("Status: Running", "IP: 127.", "Node: kube-sim-node/127.0.0.1", "Ready True",
                     "Readiness: http-get http://:80/ delay=0s timeout=1s period=1s #success=1 #failure=3",
                     "Normal Scheduled", "Successfully assigned kubectl-test/web-1 to kube-sim-node",
                     "Normal Started", "Started container web"):
        assert expected in text, text


def test_create_twice_is_already_exists(cluster):
    pod = json.dumps(pod_manifest("twice"))
    cluster.kubectl("create", "-f", "-", input=pod)
    second = cluster.kubectl("create", "-f", "-", input=pod, check=False)
    assert second.returncode != 0
    assert 'pods "twice" already exists' in second.stderr
    cluster.kubectl("delete", "pod", "twice", "--wait=false")


def test_invalid_pod_is_refused_with_the_apiservers_message(cluster):
    bad = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
                      "spec": {"containers": [{"name": "web", "image": "httpd"}]}})
    result = cluster.kubectl("create", "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert 'The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in result.stderr
    empty = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {}})
    result = cluster.kubectl("create", "-f", "-", input=empty, check=False)
    assert 'The Pod "empty" is invalid: spec.containers: Required value' in result.stderr


def test_get_watch_streams_changes_until_the_server_ends_it(cluster):
    cluster.kubectl("apply", "-f", "-", input='{"apiVersion": "v1", "kind": "Namespace", '
                                              '"metadata": {"name": "watch-test"}}')
    watcher = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "get", "pods", "-n", "watch-test", "-w",
         "--request-timeout=8s", "--output-watch-events"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: "GET /api/v1/namespaces/watch-test/pods?" in cluster.log_path.read_text()
                 and "watch=true" in cluster.log_path.read_text(), what="the watch to start")
        cluster.kubectl("create", "-n", "watch-test", "-f", "-", input=json.dumps(pod_manifest("watched")))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/watched", "-n", "watch-test", "--timeout=30s")
        cluster.kubectl("delete", "pod", "watched", "-n", "watch-test")
        output, _ = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    events = [line.split()[0] for line in output.splitlines()[1:]]
    assert events[0] == "ADDED"
    assert "MODIFIED" in events
    assert events[-1] == "DELETED"


def test_delete_waits_until_the_pod_is_gone(cluster):
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod_manifest("short-lived")))
    cluster.kubectl("wait", "--for=condition=Ready", "pod/short-lived", "--timeout=30s")
    cluster.kubectl("delete", "pod", "short-lived", "--timeout=30s")
    gone = cluster.kubectl("get", "pod", "short-lived", check=False)
    assert gone.returncode != 0
    assert 'pods "short-lived" not found' in gone.stderr
