"""pod-router-controller's run mode against a real redis-server, a real
rabbitmq-server and kube-sim. The tests play the gateway's part exactly as
the module does it: the `route` script takes the creation lock and writes
the pending session, then one creation event is published to the exchange."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest
import redis
from kubernetes import client as kube_client
from kubernetes import config as kube_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from polling import wait_until  # noqa: E402
from servers import (ON_REAL_CLUSTER, RedisServer, free_port, kubernetes_api,  # noqa: E402
                     private_rabbitmq)

CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER",
                            str(REPO / "build" / "controller" / "pod-router-controller"))
KEY_PREFIX = "pod-router:"
USERS_NS = "pod-router-users"
SYSTEM_NS = "pod-router-system"
QUEUE = "pod-router.create"
DEAD_QUEUE = "pod-router.create.dead"
# This run's pods in a /20 of their own (the gateway tests use 127.100+).
POD_CIDR = f"127.{60 + os.getpid() % 30}.{(os.getpid() // 30 % 16) * 16}.0/20"

TEMPLATE = """apiVersion: v1
kind: Pod
metadata:
  labels:
    app.kubernetes.io/name: pod-router-user-pod
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  # What PodSecurity "restricted" (the users' namespace) asks of a pod, as
  # the shipped template has it: the real API server refuses a pod without.
  securityContext:
    runAsNonRoot: true
    runAsUser: 101
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: web
      image: {image}
      ports:
        - name: http
          containerPort: 8080
      readinessProbe:
        httpGet:
          path: /
          port: http
        initialDelaySeconds: {ready_delay}
        periodSeconds: 1
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: ["ALL"]
"""

class Controller:
    """One pod-router-controller run process, with its JSON log lines."""

    def __init__(self, directory, kube, redis_server, rabbitmq, template, name, **flags):
        self.directory = Path(directory)
        self.name = name
        self.port = free_port()
        self.log_path = self.directory / f"{name}.log"
        settings = {
            "kubeconfig": kube.service_account_kubeconfig(),
            "namespace": USERS_NS,
            "pod-template": template,
            "redis": f"127.0.0.1:{redis_server.port}",
            "amqp-url": f"amqp://127.0.0.1:{rabbitmq.port}/",
            "listen": f"127.0.0.1:{self.port}",
            "lease-identity": name,
            "reap-interval": "500ms",
            "log-level": "debug",
        }
        settings.update({key.replace("_", "-"): value for key, value in flags.items()})
        self.argv = [CONTROLLER, "run"] + [f"--{key}={value}" for key, value in settings.items()]
        self.process = None

    def start(self, wait_ready=True):
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT)
        if wait_ready:
            wait_until(lambda: self.get("/readyz")[0] == 200 or self.process.poll() is not None,
                       timeout=30, what=f"{self.name} ready")
            assert self.process.poll() is None, self.log_text()[-3000:]
        return self

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name, labels=""):
        status, body = self.get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return 0.0

    def log_text(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self):
        lines = []
        for line in self.log_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"unparsed": line})
        return lines

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self.log_file.close()
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)


class Stack:
    """What a test needs around the controller: the gateway's half of the
    protocol, the queues, the pods."""

    def __init__(self, directory, kube, redis_server, rabbitmq):
        self.directory = Path(directory)
        self.kube = kube
        self.redis_server = redis_server
        self.rabbitmq = rabbitmq
        self.redis = redis.Redis(port=redis_server.port, decode_responses=True)
        self.route = self.redis.register_script(self._script("route"))
        self.controllers = []
        kube_config.load_kube_config(config_file=str(kube.kubeconfig))
        self.core = kube_client.CoreV1Api()
        self.coordination = kube_client.CoordinationV1Api()

    @staticmethod
    def _script(name):
        return subprocess.run([CONTROLLER, "redis-scripts", "--source", name],
                              capture_output=True, check=True, text=True).stdout

    def template(self, image="docker.io/nginxinc/nginx-unprivileged:1.28.0-alpine", ready_delay=0, name="template.yaml"):
        path = self.directory / name
        path.write_text(TEMPLATE.format(image=image, ready_delay=ready_delay))
        return path

    def controller(self, name="controller-a", template=None, **flags):
        process = Controller(self.directory, self.kube, self.redis_server, self.rabbitmq,
                             template or self.template(), name, **flags)
        self.controllers.append(process)
        return process

    def pod_name(self, identity):
        return subprocess.run([CONTROLLER, "pod-name", identity], capture_output=True,
                              check=True, text=True).stdout.split()[-1]

    def request(self, identity):
        """What the gateway does on a miss: route (takes the lock, writes the
        pending session), then publish the creation event. Returns the pod."""
        pod = self.pod_name(identity)
        request_id = uuid.uuid4().hex
        reply = self.route(keys=self.route_keys(pod),
                           args=[identity, pod, request_id, "60000", "600000", "1"])
        assert reply[0] in ("create", "pending", "ready", "claimed"), reply
        if reply[0] == "create":
            self.publish({"version": 1, "identity": identity, "pod": pod, "request_id": request_id,
                          "timestamp_ms": int(time.time() * 1000)})
        return pod

    @staticmethod
    def route_keys(pod):
        """The route script's KEYS, in its order (docs/redis-schema.md)."""
        return [f"{KEY_PREFIX}session:{pod}", f"{KEY_PREFIX}creating:{pod}", f"{KEY_PREFIX}activity",
                f"{KEY_PREFIX}pool:free", f"{KEY_PREFIX}pool:address", f"{KEY_PREFIX}pool:claims",
                f"{KEY_PREFIX}pool:claimed", f"{KEY_PREFIX}pool:target"]

    def publish(self, event, raw=None):
        """As the module publishes: declare the topology on a new connection
        (a restarted broker may have lost it), then publish, confirmed."""
        self.declare(purge=False)
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.rabbitmq.port))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            body = raw if raw is not None else json.dumps(event).encode()
            channel.basic_publish("pod-router", "create", body,
                                  pika.BasicProperties(content_type="application/json",
                                                       delivery_mode=2),
                                  mandatory=True)
        finally:
            connection.close()

    def queue_depth(self, queue=QUEUE):
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.rabbitmq.port))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()

    def declare(self, purge=True):
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.rabbitmq.port))
        try:
            channel = connection.channel()
            channel.exchange_declare("pod-router.dlx", "direct", durable=True)
            channel.queue_declare(DEAD_QUEUE, durable=True)
            channel.queue_bind(DEAD_QUEUE, "pod-router.dlx", "dead")
            channel.exchange_declare("pod-router", "direct", durable=True)
            channel.queue_declare(QUEUE, durable=True, arguments={
                "x-dead-letter-exchange": "pod-router.dlx", "x-dead-letter-routing-key": "dead"})
            channel.queue_bind(QUEUE, "pod-router", "create")
            if purge:
                channel.queue_purge(QUEUE)
                channel.queue_purge(DEAD_QUEUE)
        finally:
            connection.close()

    def session(self, pod):
        return self.redis.hgetall(f"{KEY_PREFIX}session:{pod}")

    def wait_session(self, pod, state, timeout=20):
        return wait_until(lambda: (self.session(pod).get("state") == state) and self.session(pod),
                          timeout=timeout, what=f"session {pod} {state}")

    def pods(self):
        return {pod.metadata.name: pod for pod in
                self.core.list_namespaced_pod(USERS_NS, label_selector="app.kubernetes.io/managed-by=pod-router").items}

    def delete_all_pods(self):
        for name in self.pods():
            try:
                self.core.delete_namespaced_pod(name, USERS_NS, grace_period_seconds=0)
            except kube_client.ApiException as error:
                if error.status != 404:
                    raise
        wait_until(lambda: not self.pods(), timeout=30, what="pods gone")

    def lease_holder(self):
        try:
            lease = self.coordination.read_namespaced_lease("pod-router-controller", SYSTEM_NS)
        except kube_client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return lease.spec.holder_identity

    def fault(self, **fault):
        """kube-sim's admin fault hook (docs/kube-sim.md). The real API
        server has none: a test that needs one runs on kube-sim only."""
        if ON_REAL_CLUSTER:
            pytest.skip("needs kube-sim's fault hook, which a real API server does not have")
        api = kube_client.ApiClient()
        api.call_api("/kube-sim/faults", "POST", body=fault, auth_settings=["BearerToken"],
                     _preload_content=False)

    def stop(self):
        for controller in self.controllers:
            controller.stop()
        for controller in self.controllers:
            text = controller.log_text()
            for sign in ("Sanitizer", "terminate called", "Segmentation"):
                assert sign not in text, f"{sign} in {controller.name}'s log:\n{text[-3000:]}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq():
    with private_rabbitmq() as broker:
        yield broker


@pytest.fixture(scope="session")
def kube(tmp_path_factory):
    sim = kubernetes_api(tmp_path_factory.mktemp("cluster"), POD_CIDR)
    kube_config.load_kube_config(config_file=str(sim.kubeconfig))
    # The namespaces and the controller's RBAC exactly as shipped (the
    # "local" overlay): the controller runs as that service account in
    # every test.
    apply_local_overlay(sim)
    yield sim
    sim.stop()


def apply_local_overlay(sim):
    """The namespaces and the controller's RBAC as shipped (overlay "local")."""
    subprocess.run(["kubectl", "--kubeconfig", str(sim.kubeconfig), "apply",
                    "-k", str(REPO / "manifests" / "overlays" / "local")],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture
def stack(tmp_path, kube, redis_server, rabbitmq):
    world = Stack(tmp_path, kube, redis_server, rabbitmq)
    world.redis.flushall()
    world.declare()
    world.delete_all_pods()
    try:
        world.coordination.delete_namespaced_lease("pod-router-controller", SYSTEM_NS)
    except kube_client.ApiException as error:
        assert error.status == 404
    yield world
    world.stop()
