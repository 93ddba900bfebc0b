"""The node agent (scripts/kube-sim/node-agent): kube-sim's kubelet as the
node of a real control plane.

The first part needs no cluster: kubeconfig parsing, the watch-to-notice
bookkeeping, the Node and Lease objects, the ordered status writes, the
service-account volumes, and the Kubelet on a backend that does not
schedule. The second part starts etcd, kube-apiserver, kube-scheduler and
kube-controller-manager with scripts/cluster.sh --no-node and runs the
agent against them; it needs the pod-router-kube binary named by
POD_ROUTER_KUBE_BINARY and is skipped without it."""

import base64
import ipaddress
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster import REPO, stop_child, wait_for
from kubesim import node_agent
from kubesim.images import ImageMap
from kubesim.kubelet import Kubelet, StoreBackend
from kubesim.node_agent import (ApiBackend, ApiError, KubeconfigError, OrderedWorkers, PodTracker,
                                ServiceAccountVolumes, load_kubeconfig)

NODE_AGENT = REPO / "scripts" / "kube-sim" / "node-agent"
CLUSTER_SH = REPO / "scripts" / "cluster.sh"


def pod(name, uid, namespace="default", node="node-a", deleting=False, phase="Pending", version="1"):
    meta = {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": version}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [{"name": "web", "image": "httpd"}]},
            "status": {"phase": phase}}


# --- kubeconfig --------------------------------------------------------------------


def write_kubeconfig(folder, user, cluster=None, name="kubeconfig"):
    document = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443",
                                                          "certificate-authority": "pki/ca.crt"}}],
        "users": [{"name": "u", "user": user}, {"name": "other", "user": {"token": "wrong"}}],
        "contexts": [{"name": "other", "context": {"cluster": "c", "user": "other"}},
                     {"name": "node", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "node",
    }
    path = Path(folder) / name
    path.write_text(json.dumps(document))
    return path


def test_a_kubeconfig_with_a_client_certificate_names_files_from_its_folder(tmp_path):
    path = write_kubeconfig(tmp_path, {"client-certificate": "pki/node.crt", "client-key": "/abs/node.key"})
    config = load_kubeconfig(path)
    assert config.server == "https://127.0.0.1:6443"
    assert config.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert config.client_cert == str(tmp_path / "pki" / "node.crt")
    assert config.client_key == "/abs/node.key"
    assert config.token is None  # the current context's user, not the other one


def test_a_kubeconfig_with_a_token_or_a_token_file_or_inline_data(tmp_path):
    assert load_kubeconfig(write_kubeconfig(tmp_path, {"token": "abc"})).token == "abc"
    config = load_kubeconfig(write_kubeconfig(tmp_path, {"tokenFile": "token"}))
    assert config.token_file == str(tmp_path / "token")
    pem = b"-----BEGIN CERTIFICATE-----\n"
    config = load_kubeconfig(write_kubeconfig(
        tmp_path, {"token": "t"},
        {"server": "https://10.0.0.1", "certificate-authority-data": base64.b64encode(pem).decode()}))
    assert config.ca_data == pem and config.ca_file is None


@pytest.mark.parametrize("text, message", [
    ("server: yaml", "is not JSON"),
    (json.dumps({"current-context": "missing", "contexts": []}), "no context named 'missing'"),
    (json.dumps({"contexts": []}), "no current-context"),
])
def test_a_broken_kubeconfig_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(path)


def test_a_client_certificate_without_its_key_is_refused(tmp_path):
    with pytest.raises(KubeconfigError, match="needs its key"):
        load_kubeconfig(write_kubeconfig(tmp_path, {"client-certificate": "node.crt"}))


# --- from the watch to the Kubelet's notices ------------------------------------------


def test_a_pod_seen_again_and_again_is_created_once():
    tracker = PodTracker()
    assert tracker.observe(pod("a", "u1")) == [("created", "default", "a", "u1")]
    assert tracker.observe(pod("a", "u1", version="2")) == []
    # A new list (after a broken watch) shows it again: still running, no notice.
    assert tracker.relist([pod("a", "u1", version="3")]) == []
    assert tracker.get_pod("default", "a")["metadata"]["resourceVersion"] == "3"


def test_deletion_is_told_once_whether_marked_or_removed():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1"))
    assert tracker.observe(pod("a", "u1", deleting=True)) == [("deleted", "default", "a", "u1")]
    assert tracker.observe(pod("a", "u1", deleting=True, version="3")) == []
    assert tracker.gone(pod("a", "u1", deleting=True)) == []  # the Kubelet knows already
    assert tracker.get_pod("default", "a") is None


def test_a_pod_removed_without_a_grace_period_is_deleted():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1"))
    assert tracker.gone(pod("a", "u1")) == [("deleted", "default", "a", "u1")]


def test_a_pod_missing_from_a_new_list_is_deleted():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1"))
    tracker.observe(pod("b", "u2"))
    assert tracker.relist([pod("b", "u2")]) == [("deleted", "default", "a", "u1")]
    assert tracker.known_uids() == {"u2"}


def test_a_late_event_never_brings_a_deleted_pod_back():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1"))
    tracker.gone(pod("a", "u1"))
    assert tracker.observe(pod("a", "u1")) == []
    assert tracker.relist([pod("a", "u1")]) == []


def test_a_new_pod_of_the_same_name_is_its_own_pod():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1"))
    tracker.observe(pod("a", "u1", deleting=True))
    # Force-deleted and made again before the old one's DELETED arrives.
    assert tracker.observe(pod("a", "u2")) == [("created", "default", "a", "u2")]
    assert tracker.get_pod("default", "a")["metadata"]["uid"] == "u2"
    assert tracker.gone(pod("a", "u1")) == []
    assert tracker.get_pod("default", "a")["metadata"]["uid"] == "u2"


def test_a_pod_finished_before_we_saw_it_is_not_run_only_removed():
    tracker = PodTracker()
    assert tracker.observe(pod("done", "u1", phase="Succeeded")) == []
    assert tracker.observe(pod("done", "u1", phase="Succeeded", deleting=True)) == \
        [("remove", "default", "done", "u1")]
    assert tracker.gone(pod("done", "u1")) == []


def test_a_pod_that_finishes_while_we_run_it_is_deleted_as_usual():
    tracker = PodTracker()
    tracker.observe(pod("job", "u1"))
    tracker.observe(pod("job", "u1", phase="Failed"))
    assert tracker.observe(pod("job", "u1", phase="Failed", deleting=True)) == \
        [("deleted", "default", "job", "u1")]


# --- the Node and its Lease ---------------------------------------------------------------


MACHINE = {"cpu": "2", "memory": "4000000Ki", "ephemeral-storage": "1000000", "kernel": "6.1.0",
           "os_image": "Debian", "machine_id": "abc", "boot_id": "def"}


def test_the_node_object_is_what_a_kubelet_registers():
    times = node_agent.transition_times(None)
    node = node_agent.node_object("node-a", "127.240.0.0/20", MACHINE, times)
    assert node["metadata"]["labels"] == {
        "kubernetes.io/hostname": "node-a", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
    assert node["spec"] == {"podCIDR": "127.240.0.0/20", "podCIDRs": ["127.240.0.0/20"]}
    status = node["status"]
    assert status["capacity"] == status["allocatable"]
    assert status["capacity"]["cpu"] == "2" and status["capacity"]["memory"] == "4000000Ki"
    assert int(status["capacity"]["pods"]) >= 110
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "KubeletReady"
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conditions[kind]["status"] == "False"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    assert {"type": "Hostname", "address": "node-a"} in status["addresses"]
    info = status["nodeInfo"]
    assert info["kubeletVersion"] == "v1.34.4-pod-router-node"
    assert info["containerRuntimeVersion"] == "pod-router-node://1"
    for field in ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "kubeProxyVersion",
                  "operatingSystem", "architecture"):
        assert isinstance(info[field], str), field


def test_transition_times_move_only_where_the_node_shows_another_status():
    shown = {"status": {"conditions": [
        {"type": "Ready", "status": "Unknown", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "DiskPressure", "status": "False", "lastTransitionTime": "2020-01-02T00:00:00Z"}]}}
    times = node_agent.transition_times(shown)
    assert times["DiskPressure"] == "2020-01-02T00:00:00Z"
    assert times["Ready"] != "2020-01-01T00:00:00Z"  # Unknown -> True: now


def test_the_lease_belongs_to_the_node():
    lease = node_agent.lease_object("node-a", "uid-1", 40)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {"apiVersion": "v1", "kind": "Node",
                                                       "name": "node-a", "uid": "uid-1"}
    assert lease["spec"]["holderIdentity"] == "node-a" and lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["spec"]["renewTime"].endswith("Z") and "." in lease["spec"]["renewTime"]


# --- the writes ----------------------------------------------------------------------------


def test_ordered_workers_keep_each_keys_order_and_drop_superseded_statuses():
    workers = OrderedWorkers(4, "test")
    done, gate = [], threading.Event()
    workers.submit("a", gate.wait)
    for index in range(5):  # all wait behind the gate: only the last status is left
        workers.submit("a", lambda index=index: done.append(("status", index)), coalesce="status")
    workers.submit("a", lambda: done.append(("remove",)))
    workers.submit("b", lambda: done.append(("b",)))
    wait_for(lambda: ("b",) in done, 5, what="another key runs meanwhile")
    gate.set()
    assert workers.wait_idle(5)
    workers.stop()
    assert [entry for entry in done if entry != ("b",)] == [("status", 4), ("remove",)]


class FakeClient:
    """Answers requests from a list of (method, path) -> answer or ApiError."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def request(self, method, path, body=None, content_type="application/json"):
        self.calls.append((method, path, body))
        answer = self.answers[(method, path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer(body) if callable(answer) else answer


POD_PATH = "/api/v1/namespaces/default/pods/a"


def mark_running(pod):
    pod["status"]["phase"] = "Running"


def test_a_status_write_starts_from_the_watchs_copy_and_reads_again_after_a_conflict():
    tracker = PodTracker()
    tracker.observe(pod("a", "u1", version="5"))
    client = FakeClient({("PUT", POD_PATH + "/status"): [ApiError(409, "Conflict", "stale"), lambda body: body],
                         ("GET", POD_PATH): pod("a", "u1", version="6")})
    backend = ApiBackend(client, tracker, threads=1)
    backend.update_pod_status("default", "a", "u1", mark_running)
    assert backend.flush(5)
    methods = [(method, body and body["metadata"]["resourceVersion"]) for method, _, body in client.calls]
    assert methods == [("PUT", "5"), ("GET", None), ("PUT", "6")]
    assert client.calls[-1][2]["status"]["phase"] == "Running"


@pytest.mark.parametrize("answer", [ApiError(404, "NotFound", "gone"), pod("a", "other-uid")])
def test_a_status_write_gives_up_on_a_pod_gone_or_replaced(answer):
    client = FakeClient({("GET", POD_PATH): answer})
    backend = ApiBackend(client, PodTracker(), threads=1)
    backend.update_pod_status("default", "a", "u1", mark_running)
    assert backend.flush(5)
    assert [call[0] for call in client.calls] == ["GET"]  # and no PUT


def test_a_status_write_waits_out_the_authorizers_lag():
    # The Node authorizer learns of a pod bound to us a moment after our watch.
    client = FakeClient({("GET", POD_PATH): [ApiError(403, "Forbidden", "no relationship"), pod("a", "u1")],
                         ("PUT", POD_PATH + "/status"): lambda body: body})
    backend = ApiBackend(client, PodTracker(), threads=1)
    backend.update_pod_status("default", "a", "u1", mark_running)
    assert backend.flush(10)
    assert [call[0] for call in client.calls] == ["GET", "GET", "PUT"]


def test_the_final_removal_is_a_delete_of_that_uid_with_no_grace():
    client = FakeClient({("DELETE", POD_PATH): {}})
    backend = ApiBackend(client, PodTracker(), threads=1)
    backend.remove_pod("default", "a", "u1")
    assert backend.flush(5)
    assert client.calls == [("DELETE", POD_PATH, {"kind": "DeleteOptions", "apiVersion": "v1",
                                                  "gracePeriodSeconds": 0, "preconditions": {"uid": "u1"}})]


# --- service-account volumes ----------------------------------------------------------------


def token_pod():
    volume = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}
    spec = pod("a", "u1", namespace="ns")
    spec["spec"].update({"serviceAccountName": "robot", "volumes": [volume], "containers": [
        {"name": "uses", "image": "x", "volumeMounts": [
            {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]},
        {"name": "does-not", "image": "x"}]})
    return spec


def test_a_token_volume_is_written_and_named_to_the_containers_that_mount_it(tmp_path):
    client = FakeClient({
        ("POST", "/api/v1/namespaces/ns/serviceaccounts/robot/token"):
            {"status": {"token": "jwt", "expirationTimestamp": "2999-01-01T00:00:00Z"}},
        ("GET", "/api/v1/namespaces/ns/configmaps/kube-root-ca.crt"): {"data": {"ca.crt": "PEM"}},
    })
    volumes = ServiceAccountVolumes(client, tmp_path)
    environment = volumes.prepare(token_pod()).result(10)
    folder = tmp_path / "pods" / "ns" / "a" / "volumes" / "kube-api-access-x"
    assert environment == {"uses": {"POD_ROUTER_SERVICEACCOUNT_DIR": str(folder)}}
    assert (folder / "token").read_text() == "jwt"
    assert (folder / "ca.crt").read_text() == "PEM"
    assert (folder / "namespace").read_text() == "ns"
    request = client.calls[0][2]["spec"]
    assert request["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "u1"}
    assert request["expirationSeconds"] == 3607 and "audiences" not in request
    # Refreshed at 80% of the lifetime asked for, not of the year granted.
    token = volumes._tokens["u1"][0]
    assert 0.75 * 3607 < token.refresh_at - time.monotonic() <= 0.8 * 3607
    assert (folder.parent.stat().st_mode & 0o777) == 0o700  # nobody else's to read
    volumes.release("ns", "a", "u1")
    assert not folder.exists()
    again = token_pod()
    again["metadata"]["uid"] = "u2"  # the same name again, another pod
    volumes.prepare(again).result(10)
    assert (folder / "token").exists()
    volumes.stop()  # at exit: no token outlives the agent
    assert not folder.exists()


def test_a_pod_without_a_token_volume_needs_no_request(tmp_path):
    client = FakeClient({})
    volumes = ServiceAccountVolumes(client, tmp_path)
    assert volumes.prepare(pod("a", "u1")).result(10) == {}
    assert client.calls == []
    volumes.stop()


# --- the Kubelet on a backend that does not schedule -----------------------------------


class RecordingBackend:
    """An API-like backend: pods from a dict, writes recorded; no bind."""

    def __init__(self, pods):
        self.pods = pods
        self.statuses, self.removed, self.events = [], [], []

    def get_pod(self, namespace, name):
        return self.pods.get((namespace, name))

    def update_pod_status(self, namespace, name, uid, mutate):
        current = json.loads(json.dumps(self.pods[(namespace, name)]))
        mutate(current)
        self.statuses.append(current["status"])

    def remove_pod(self, namespace, name, uid):
        self.removed.append((namespace, name, uid))

    def create_event(self, namespace, event):
        self.events.append(event)


class StaticVolumes:
    def __init__(self, environment):
        self.environment = environment
        self.released = []

    def prepare(self, pod):
        import concurrent.futures
        future = concurrent.futures.Future()
        future.set_result(self.environment)
        return future

    def release(self, namespace, name, uid):
        self.released.append(uid)


def test_a_kubelet_without_the_scheduler_needs_no_bind_and_runs_only_bound_pods(tmp_path):
    with pytest.raises(ValueError, match="binds pods"):
        Kubelet(RecordingBackend({}), ImageMap.load(), None, tmp_path, 0, 1)
    unbound = pod("free", "u0", node="")
    bound = pod("job", "u1", node="node-a")
    bound["spec"].update({"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "env-printer", "volumeMounts": []}]})
    images_path = tmp_path / "images.json"
    images_path.write_text(json.dumps({"images": {"env-printer": {
        "command": ["/bin/sh", "-c", 'echo "dir=$POD_ROUTER_SERVICEACCOUNT_DIR"']}}}))
    backend = RecordingBackend({("default", "free"): unbound, ("default", "job"): bound})
    volumes = StaticVolumes({"main": {"POD_ROUTER_SERVICEACCOUNT_DIR": "/somewhere"}})
    kubelet = Kubelet(backend, ImageMap.load(images_path), None, tmp_path, 0, 1, "127.240.255.0/28",
                      node_name="node-a", host_ip="127.0.0.1", scheduler=False, volumes=volumes)
    kubelet.start()
    try:
        kubelet.pod_created("default", "free", "u0")
        kubelet.pod_created("default", "job", "u1")
        kubelet.pod_created("default", "job", "u1")  # told twice: still one run
        wait_for(lambda: backend.statuses and backend.statuses[-1]["phase"] == "Succeeded", 10,
                 what="the pod to finish")
        assert all(event["source"]["host"] == "node-a" for event in backend.events)
        assert [e["reason"] for e in backend.events].count("Started") == 1
        assert backend.statuses[-1]["hostIP"] == "127.0.0.1"
        assert ipaddress.ip_address(backend.statuses[-1]["podIP"]) in ipaddress.ip_network("127.240.255.0/28")
        log = tmp_path / "pods" / "default" / "job" / "main.log"
        assert log.read_text() == "dir=/somewhere\n"
        kubelet.pod_deleted("default", "job", "u1")
        wait_for(lambda: backend.removed, 10, what="the final removal")
        assert backend.removed == [("default", "job", "u1")] and volumes.released == ["u1"]
        assert all(event["involvedObject"]["name"] != "free" for event in backend.events)
    finally:
        kubelet.stop()


def test_kube_sim_keeps_its_store_backend_and_scheduler(tmp_path):
    from kubesim.store import Store
    kubelet = Kubelet(Store(), ImageMap.load(), None, tmp_path, 0, 1)
    assert isinstance(kubelet.backend, StoreBackend) and kubelet.scheduler
    assert kubelet.node_name == "kube-sim-node"


def test_the_command_line_refuses_a_pod_cidr_off_loopback(capsys):
    with pytest.raises(SystemExit):
        node_agent.parse_args(["--kubeconfig", "k", "--node-name", "n", "--pod-cidr", "10.0.0.0/8",
                               "--state-dir", "s"])
    assert "127.0.0.0/8" in capsys.readouterr().err


def test_the_help_names_the_flags_and_the_token_variable():
    result = subprocess.run([sys.executable, str(NODE_AGENT), "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    for text in ("--kubeconfig", "--pod-cidr", "--lease-duration", "--crash-backoff",
                 "POD_ROUTER_SERVICEACCOUNT_DIR"):
        assert text in result.stdout


# --- against a real control plane -------------------------------------------------------------

def _kube_binary():
    """The pod-router-kube binary: POD_ROUTER_KUBE_BINARY, or in the real
    control plane tier (POD_ROUTER_CLUSTER=real) the one build.sh cached,
    where a missing one fails the tests instead of skipping them."""
    named = os.environ.get("POD_ROUTER_KUBE_BINARY", "")
    if named or os.environ.get("POD_ROUTER_CLUSTER") != "real":
        return named
    return subprocess.run([str(REPO / "scripts" / "cluster" / "build.sh"), "--print-path"],
                          capture_output=True, text=True, timeout=60).stdout.strip()


KUBE_BINARY = _kube_binary()
REAL_TIER = os.environ.get("POD_ROUTER_CLUSTER") == "real"
needs_control_plane = pytest.mark.skipif(
    not REAL_TIER and not (KUBE_BINARY and os.path.isfile(KUBE_BINARY)),
    reason="needs a real control plane: run with POD_ROUTER_CLUSTER=real, or set "
           "POD_ROUTER_KUBE_BINARY to the pod-router-kube binary (scripts/cluster/build.sh)")

NODE_NAME = "agent-test-node"
AGENT_IMAGES = {"images": {
    "crasher": {"command": ["/bin/sh", "-c", "echo crashing; exit 3"]},
    "stubborn": {"command": ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]},
    "token-printer": {"command": ["/bin/sh", "-c", 'cat "$POD_ROUTER_SERVICEACCOUNT_DIR/token"; echo; '
                                                   'exec sleep 1000']},
    "counter": {"command": ["/bin/sh", "-c", "echo started; exec sleep 1000"]},
    "once": {"command": ["/bin/sh", "-c", "echo started"]},
}}


def _free_port_pair():
    """A port P with P+1 free as well (etcd's client and peer ports)."""
    for _ in range(100):
        port = random.randrange(20000, 30000)
        try:
            for candidate in (port, port + 1):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise RuntimeError("no free ports")


class ControlPlane:
    """scripts/cluster.sh's control plane, and raw HTTPS as its admin."""

    def __init__(self, folder):
        self.dir = Path(folder)
        block = random.SystemRandom().randrange(256)  # a /20 of 127.240.0.0/12
        self.pod_cidr = ipaddress.ip_network(f"127.{240 + block // 16}.{(block % 16) * 16}.0/20")
        api_port, etcd_port = _free_port_pair(), _free_port_pair()
        self.server = f"https://127.0.0.1:{api_port}"
        self.args = ["--dir", str(self.dir), "--api-port", str(api_port), "--etcd-port", str(etcd_port),
                     "--pod-cidr", str(self.pod_cidr), "--node-name", NODE_NAME]
        self.cluster_sh("up", "--no-node", timeout=300)
        self._context = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        self._context.load_cert_chain(self.dir / "pki" / "admin.crt", self.dir / "pki" / "admin.key")

    def cluster_sh(self, action, *extra, timeout=120):
        result = subprocess.run(["bash", str(CLUSTER_SH), action, *self.args, *extra], capture_output=True,
                                text=True, timeout=timeout, env={**os.environ, "POD_ROUTER_KUBE_BINARY": KUBE_BINARY})
        if result.returncode != 0:
            raise AssertionError(f"cluster.sh {action} failed:\n{result.stdout}\n{result.stderr}")

    def api(self, method, path, body=None, token=None):
        request = urllib.request.Request(self.server + path, method=method,
                                         data=None if body is None else json.dumps(body).encode())
        request.add_header("Content-Type", "application/json")
        context = self._context
        if token:
            request.add_header("Authorization", f"Bearer {token}")
            context = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as reply:
                return reply.status, json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def get(self, path):
        status, body = self.api("GET", path)
        return body if status == 200 else None

    def namespace(self, name):
        self.api("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        # Pods are refused until the controller-manager made the default account.
        wait_for(lambda: self.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60,
                 what=f"the default service account of {name}")
        return name

    def pod(self, namespace, name):
        return self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


class Agent:
    """The node agent as a child process, so that its exit code counts."""

    def __init__(self, plane, folder):
        self.plane = plane
        self.state_dir = Path(folder) / "node"
        images = Path(folder) / "images.json"
        images.write_text(json.dumps(AGENT_IMAGES))
        self.log_path = Path(folder) / "node-agent.log"
        self.argv = [str(NODE_AGENT), "--kubeconfig", str(plane.dir / "kubeconfig.node"),
                     "--node-name", NODE_NAME, "--pod-cidr", str(plane.pod_cidr),
                     "--state-dir", str(self.state_dir), "--image-map", str(images),
                     "--crash-backoff", "1", "--lease-duration", "8"]
        self.process = None
        self.start()

    def start(self):
        self._log = open(self.log_path, "a")
        self.process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self, timeout=30):
        return stop_child(self.process, self._log, timeout)

    def container_log(self, namespace, pod, container):
        path = self.state_dir / "pods" / namespace / pod / f"{container}.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    if not REAL_TIER and not (KUBE_BINARY and os.path.isfile(KUBE_BINARY)):
        pytest.skip("needs POD_ROUTER_CLUSTER=real or POD_ROUTER_KUBE_BINARY")
    folder = tmp_path_factory.mktemp("na-cluster")
    control_plane = ControlPlane(folder)
    try:
        yield control_plane
    finally:
        control_plane.cluster_sh("down")


@pytest.fixture(scope="module")
def agent(plane, tmp_path_factory):
    running = Agent(plane, tmp_path_factory.mktemp("na-agent"))
    try:
        wait_for(lambda: _ready(plane.get(f"/api/v1/nodes/{NODE_NAME}")), 60, interval=0.2,
                 what="the node to be Ready")
        yield running
    finally:
        assert running.stop() == 0, running.log_path.read_text()[-3000:]


def _ready(obj):
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _container(pod_obj):
    statuses = ((pod_obj or {}).get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0]


def _manifest(name, image, port=8080, probe=False, grace=None, restart="Always", automount=False):
    container = {"name": "main", "image": image, "ports": [{"containerPort": port}]}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}
    spec = {"containers": [container], "restartPolicy": restart, "automountServiceAccountToken": automount}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@needs_control_plane
def test_the_node_registers_ready_and_renews_its_lease(plane, agent):
    node = plane.get(f"/api/v1/nodes/{NODE_NAME}")
    assert node["spec"]["podCIDR"] == str(plane.pod_cidr)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE_NAME
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4-pod-router-node"
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE_NAME}"
    lease = wait_for(lambda: plane.get(lease_path), 20, what="the node's lease")
    assert lease["spec"]["holderIdentity"] == NODE_NAME and lease["spec"]["leaseDurationSeconds"] == 8
    wait_for(lambda: plane.get(lease_path)["spec"]["renewTime"] != lease["spec"]["renewTime"], 10,
             what="a lease renewal (every 2 s)")


@needs_control_plane
def test_a_demo_pod_is_scheduled_runs_serves_and_goes(plane, agent):
    namespace = plane.namespace("na-demo")
    status, _ = plane.api("POST", f"/api/v1/namespaces/{namespace}/pods", _manifest("web", "httpd", probe=True))
    assert status == 201
    running = wait_for(lambda: _ready(plane.pod(namespace, "web")) and plane.pod(namespace, "web"), 60,
                       interval=0.2, what="the pod to be Ready")
    assert running["spec"]["nodeName"] == NODE_NAME
    assert ipaddress.ip_address(running["status"]["podIP"]) in plane.pod_cidr
    with urllib.request.urlopen(f"http://{running['status']['podIP']}:8080/", timeout=5) as reply:
        assert b"web" in reply.read()
    events = plane.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    # kube-scheduler writes events.k8s.io events: its name is the reportingComponent.
    reasons = {(e["source"].get("component") or e.get("reportingComponent"), e["reason"]) for e in events}
    assert {("default-scheduler", "Scheduled"), ("kubelet", "Started")} <= reasons
    assert plane.api("DELETE", f"/api/v1/namespaces/{namespace}/pods/web")[0] == 200
    wait_for(lambda: plane.pod(namespace, "web") is None, 20, interval=0.2, what="the pod to be removed")


@needs_control_plane
def test_crash_loops_pull_failures_and_grace_periods(plane, agent):
    namespace = plane.namespace("na-states")
    for manifest in (_manifest("crash", "crasher"), _manifest("nopull", "no-such-image"),
                     _manifest("stubborn", "stubborn", grace=2)):
        assert plane.api("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)[0] == 201
    wait_for(lambda: _container(plane.pod(namespace, "crash")).get("restartCount", 0) >= 2, 60,
             interval=0.2, what="restarts")
    wait_for(lambda: (_container(plane.pod(namespace, "crash")).get("state") or {}).get("waiting", {})
             .get("reason") == "CrashLoopBackOff", 30, interval=0.2, what="CrashLoopBackOff")
    wait_for(lambda: (_container(plane.pod(namespace, "nopull")).get("state") or {}).get("waiting", {})
             .get("reason") in ("ErrImagePull", "ImagePullBackOff"), 30, interval=0.2, what="a pull failure")
    wait_for(lambda: "running" in (_container(plane.pod(namespace, "stubborn")).get("state") or {}), 30,
             interval=0.2, what="the stubborn pod to run")
    began = time.monotonic()
    plane.api("DELETE", f"/api/v1/namespaces/{namespace}/pods/stubborn")
    wait_for(lambda: plane.pod(namespace, "stubborn") is None, 30, interval=0.1, what="the stubborn pod to go")
    assert 1.5 < time.monotonic() - began < 10  # SIGTERM ignored, SIGKILL after the 2 s grace


@needs_control_plane
def test_a_pods_service_account_token_authenticates_as_the_account(plane, agent):
    namespace = plane.namespace("na-token")
    manifest = _manifest("reader", "token-printer", automount=True)
    assert plane.api("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)[0] == 201
    token = wait_for(lambda: agent.container_log(namespace, "reader", "main").strip(), 60, interval=0.2,
                     what="the container to print its token")
    status, review = plane.api("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                               token=token)
    assert status == 201, review
    user = review["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:default"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["reader"]
    volumes = agent.state_dir / "pods" / namespace / "reader" / "volumes"
    (folder,) = volumes.iterdir()
    assert (folder / "namespace").read_text() == namespace
    assert "BEGIN CERTIFICATE" in (folder / "ca.crt").read_text()
    plane.api("DELETE", f"/api/v1/namespaces/{namespace}/pods/reader")
    wait_for(lambda: plane.pod(namespace, "reader") is None, 20, interval=0.2, what="the pod to go")
    assert not volumes.exists()  # the token does not outlive the pod


@needs_control_plane
def test_a_restarted_agent_runs_each_pod_once_more_and_keeps_the_node(plane, agent):
    namespace = plane.namespace("na-restart")
    for manifest in (_manifest("counter", "counter"), _manifest("done", "once", restart="Never")):
        assert plane.api("POST", f"/api/v1/namespaces/{namespace}/pods", manifest)[0] == 201
    wait_for(lambda: agent.container_log(namespace, "counter", "main") == "started\n", 60, interval=0.2,
             what="the counter pod to start")
    wait_for(lambda: plane.pod(namespace, "done")["status"].get("phase") == "Succeeded", 60, interval=0.2,
             what="the other pod to finish")
    assert agent.stop() == 0, agent.log_path.read_text()[-3000:]
    assert plane.get(f"/api/v1/nodes/{NODE_NAME}") is not None  # not deleted on exit
    agent.start()
    wait_for(lambda: agent.container_log(namespace, "counter", "main") == "started\nstarted\n", 60,
             interval=0.2, what="the counter pod to start again")
    wait_for(lambda: "running" in (_container(plane.pod(namespace, "counter")).get("state") or {}), 30,
             interval=0.2, what="the counter pod to show running")
    time.sleep(2)
    assert agent.container_log(namespace, "counter", "main") == "started\nstarted\n"  # once, not twice
    # A finished pod is not run again, and its deletion is still carried out.
    assert agent.container_log(namespace, "done", "main") == "started\n"
    assert plane.pod(namespace, "done")["status"]["phase"] == "Succeeded"
    plane.api("DELETE", f"/api/v1/namespaces/{namespace}/pods/done")
    wait_for(lambda: plane.pod(namespace, "done") is None, 20, interval=0.2, what="the finished pod to go")
