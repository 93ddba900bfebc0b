"""The seed's flow on the real node (scripts/node-stack.sh, docs/node.md):
curl -> the gateway pod (nginx + the module) -> the Redis and RabbitMQ pods
-> the controller pod -> kube-apiserver -> kube-scheduler -> the kubelet
-> containerd -> the user's container -> ready -> proxied -> reaped.

Everything here was deployed with `kubectl apply -k` of the local-node
overlay from images built on this machine; the tests only send requests to
the gateway's relay on 127.0.0.1 and ask the API server and containerd what
happened."""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from polling import wait_until  # noqa: E402
from servers import free_port, free_port_pair  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NODE_STACK = REPO / "scripts" / "node-stack.sh"
CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER",
                            str(REPO / "build" / "controller" / "pod-router-controller"))
IDLE_TIMEOUT = 25  # seconds: the reap test waits this long, and a little more
NAMESPACE = "pod-router-system"
USERS = "pod-router-users"


class NodeStack:
    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.port = free_port()
        self.env = dict(os.environ, POD_ROUTER_RUN_DIR=str(run_dir), POD_ROUTER_PORT=str(self.port),
                        POD_ROUTER_KUBE_PORT=str(free_port()), POD_ROUTER_ETCD_PORT=str(free_port_pair()),
                        POD_ROUTER_IDLE_TIMEOUT=str(IDLE_TIMEOUT), POD_ROUTER_REAP_INTERVAL="2s")
        self.kube = subprocess.run([str(REPO / "scripts" / "cluster" / "build.sh")], capture_output=True,
                                   text=True, check=True, timeout=1800).stdout.strip()
        self.secret_file = run_dir / "manifests" / "overlays" / "plain-nginx" / "secrets" / "identity-secret"

    def script(self, *args, timeout=1800, check=True):
        done = subprocess.run([str(NODE_STACK), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check:
            assert done.returncode == 0, f"node-stack.sh {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def kubectl(self, *args, check=True):
        done = subprocess.run([self.kube, "kubectl", "--kubeconfig", str(self.run_dir / "cluster" / "kubeconfig"),
                               "--request-timeout", "20s", *args], capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def json(self, *args):
        return json.loads(self.kubectl(*args, "-o", "json"))

    def token(self, user):
        done = subprocess.run([CONTROLLER, "sign", "--secret-file", str(self.secret_file), user],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def get(self, user, path="/", timeout=90):
        """One request through the gateway: (status, headers, body)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": f"Bearer {self.token(user)}",
                                                  "Host": "local.gateway.com"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, dict(answer.headers), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode(errors="replace")

    def user_pods(self):
        return self.json("-n", USERS, "get", "pods")["items"]

    def pod_of(self, served_name):
        pods = [p for p in self.user_pods() if p["metadata"]["name"] == served_name]
        return pods[0] if pods else None

    def ctr(self, *args):
        return subprocess.run(["ctr", "--address", str(self.run_dir / "cluster" / "node" / "run" / "containerd.sock"),
                               "--namespace", "k8s.io", "--timeout", "20s", *args],
                              capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    node = NodeStack(tmp_path_factory.mktemp("node-stack"))
    try:
        node.script("up")
        yield node
    finally:
        node.script("down", timeout=300, check=False)


def served_by(stack, user):
    status, headers, body = stack.get(user)
    assert status == 200, (status, body[:300])
    assert "It works!" in body
    return headers["X-Pod-Name"]


def test_everything_runs_as_pods_of_the_images_built_here(stack):
    pods = stack.json("-n", NAMESPACE, "get", "pods")["items"]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert {i.rsplit(":", 1)[0] for i in images} == {
        "localhost/pod-router/redis", "localhost/pod-router/rabbitmq",
        "localhost/pod-router/pod-router-controller", "localhost/pod-router/pod-router-nginx"}
    for pod in pods:
        assert pod["spec"]["nodeName"] == "pod-router-node"
        assert pod["status"]["podIP"].startswith("10.244.0."), pod["metadata"]["name"]
        for status in pod["status"]["containerStatuses"]:
            assert status["ready"] and status["containerID"].startswith("containerd://"), status
    # the StatefulSets' claims are bound to the node's local volumes
    claims = stack.json("-n", NAMESPACE, "get", "pvc")["items"]
    assert len(claims) == 2 and all(c["status"]["phase"] == "Bound" for c in claims)


def test_the_seed_flow_cold_start_then_the_same_pod(stack):
    first = served_by(stack, "seed-user-1")
    pod = stack.pod_of(first)
    assert pod is not None, f"{first} is not a pod of {USERS}"
    assert pod["spec"]["containers"][0]["image"].startswith("localhost/pod-router/demo:")
    assert pod["status"]["podIP"].startswith("10.244.0.")
    # later requests go straight to it
    for _ in range(5):
        assert served_by(stack, "seed-user-1") == first
    # the demo page names the pod it runs in: the kubelet set its hostname
    _, _, body = stack.get("seed-user-1")
    assert f"pod: {first}" in body


def test_two_users_get_two_pods(stack):
    one, two = served_by(stack, "seed-user-a"), served_by(stack, "seed-user-b")
    assert one != two
    assert stack.pod_of(one)["status"]["podIP"] != stack.pod_of(two)["status"]["podIP"]


def test_an_idle_pod_is_reaped_and_made_again_on_the_next_request(stack):
    name = served_by(stack, "seed-user-idle")
    uid = stack.pod_of(name)["metadata"]["uid"]
    wait_until(lambda: stack.pod_of(name) is None, timeout=IDLE_TIMEOUT + 60, interval=1,
               what=f"{name} reaped after {IDLE_TIMEOUT} s idle")
    again = served_by(stack, "seed-user-idle")
    assert stack.pod_of(again)["metadata"]["uid"] != uid


def test_a_killed_user_container_is_recovered_on_the_next_request(stack):
    name = served_by(stack, "seed-user-killed")
    pod = stack.pod_of(name)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    stack.ctr("tasks", "kill", "--signal", "SIGKILL", container_id)
    # At once, before the kubelet has noticed (the API still says Ready):
    # the gateway finds the address dead and holds the request until the
    # controller has replaced the pod, rather than trust its state.
    assert served_by(stack, "seed-user-killed") == name
    fresh = stack.pod_of(name)
    assert fresh["metadata"]["uid"] != pod["metadata"]["uid"]
    assert fresh["status"]["containerStatuses"][0]["restartCount"] == 0
    # and every request after it
    for _ in range(3):
        assert served_by(stack, "seed-user-killed") == name


def controller_pods(stack):
    return stack.json("-n", NAMESPACE, "get", "pods", "-l",
                      "app.kubernetes.io/name=pod-router-controller")["items"]


def lease_holder(stack):
    lease = stack.json("-n", NAMESPACE, "get", "lease", "pod-router-controller")
    return lease["spec"].get("holderIdentity")


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def test_the_leading_controller_pod_deleted_under_traffic(stack):
    holder = wait_until(lambda: lease_holder(stack), timeout=60, what="a Lease holder")
    leader = [p["metadata"]["name"] for p in controller_pods(stack) if p["metadata"]["name"] in holder]
    assert leader, f"no controller pod holds the Lease ({holder})"
    stack.kubectl("-n", NAMESPACE, "delete", "pod", leader[0], "--wait=false")
    # new users during the hand-over: each is served from a pod of its own
    served = [served_by(stack, f"handover-{i}") for i in range(4)]
    assert len(set(served)) == 4
    new_holder = wait_until(lambda: (h := lease_holder(stack)) and leader[0] not in h and h,
                            timeout=120, interval=1, what="another controller took the Lease")
    assert new_holder
    wait_until(lambda: len([p for p in controller_pods(stack) if ready(p)]) == 2, timeout=180,
               interval=1, what="the Deployment back at two ready controllers")


def test_redis_gone_the_gateway_answers_503_then_recovers(stack):
    known = served_by(stack, "redis-user")
    # Its pod deleted and not made again until the test says so: the
    # StatefulSet scaled to none (a deleted pod alone is back in seconds).
    stack.kubectl("-n", NAMESPACE, "scale", "statefulset/redis", "--replicas", "0")
    try:
        wait_until(lambda: not stack.json("-n", NAMESPACE, "get", "pods", "-l",
                                          "app.kubernetes.io/name=redis")["items"],
                   timeout=90, interval=1, what="the Redis pod gone")
        # a new user cannot be routed while Redis is gone, and nothing
        # waits for long
        status, _, body = stack.get("redis-gone-new-user", timeout=30)
        assert status == 503, (status, body[:300])
        # a known user, once the gateways' cache (pod_router_cache_ttl 2s)
        # has let its address go, neither
        wait_until(lambda: stack.get("redis-user", timeout=30)[0] == 503, timeout=30, interval=0.5,
                   what="a known user's 503 once the gateways' cache expired")
        # the controllers' /readyz asks Redis: their readiness probes fail
        wait_until(lambda: not any(ready(p) for p in controller_pods(stack)), timeout=60, interval=1,
                   what="the controllers' readiness probes failing without Redis")
    finally:
        stack.kubectl("-n", NAMESPACE, "scale", "statefulset/redis", "--replicas", "1")
    stack.kubectl("-n", NAMESPACE, "rollout", "status", "statefulset/redis", "--timeout", "180s")
    wait_until(lambda: stack.get("redis-user", timeout=30)[0] == 200, timeout=120, interval=1,
               what="the gateway serving again once Redis is back")
    # Redis kept its data on its volume (appendonly): the same pod
    assert served_by(stack, "redis-user") == known
    wait_until(lambda: all(ready(p) for p in controller_pods(stack)), timeout=120, interval=1,
               what="the controllers ready again")


def test_the_gateway_and_controller_probes_run(stack):
    """The kubelet runs the probes the manifests declare: every probe of
    theirs has been answered (Ready), and none has killed a container."""
    pods = stack.json("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=gateway")["items"]
    pods += controller_pods(stack)
    assert len(pods) == 4
    for pod in pods:
        assert ready(pod), pod["metadata"]["name"]
        for container in pod["spec"]["containers"]:
            assert container.get("readinessProbe") and container.get("livenessProbe")
    # the kubelet's own record: probe results it reported as metrics
    metrics = stack.kubectl("get", "--raw", "/api/v1/nodes/pod-router-node/proxy/metrics/probes")
    probes = [line for line in metrics.splitlines()
              if line.startswith("prober_probe_total") and NAMESPACE in line and 'result="successful"' in line]
    kinds = {part.split('"')[1] for line in probes for part in line.split(",") if part.startswith("probe_type=")}
    assert {"Readiness", "Liveness"} <= kinds, probes[:5]
