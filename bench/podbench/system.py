"""The whole pod-router system for the phases that need a cluster, started
for real: redis-server, rabbitmq-server, a Kubernetes API (kube-sim, or the
real control plane with our node agent) with each pod's timeline recorded,
the controller under its RBAC, and the backend pod every case proxies to.
Gateways are started by the phases."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import redis

from . import servers
from .pod_watch import PodWatch

POD_CIDR = "127.1.0.0/16"
USER_NAMESPACE = "pod-router-users"
BACKENDS = ("kube-sim", "real")
BACKEND_IMAGE = "bench/backend"


def write_ready_sessions(client, sessions, port):
    """Sessions as the controller's mark_ready leaves them: `sessions` is
    (pod, identity, ip) for each; all on `port`, active now. Returns now in
    ms on Redis's clock."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    pipe = client.pipeline(transaction=False)
    for n, (pod, identity, ip) in enumerate(sessions):
        pipe.hset(f"pod-router:session:{pod}", mapping={
            "identity": identity, "pod": pod, "state": "ready", "ip": ip, "port": str(port),
            "created_ms": now_ms, "updated_ms": now_ms, "ready_ms": now_ms})
        pipe.zadd("pod-router:activity", {pod: now_ms})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return now_ms


def lower_priority(pid, niceness=10):
    """nice for every thread of a running process (setpriority() on a pid
    reaches only its main thread); threads it starts later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


class System:
    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.gateways = []
        self.kube = None
        self.pod_watch = None
        self.backend_name = None
        self.controller = None
        self.controller_log = None
        self.redis = servers.RedisServer(self.run_dir / "redis")
        self._rabbitmq_context = servers.private_rabbitmq()
        self.rabbitmq = self._rabbitmq_context.__enter__()
        self.amqp_port = self.rabbitmq.port
        self.backend_port = servers.free_port()
        self.backend = servers.Nginx(self.run_dir, "backend", "backend.conf.in", self.backend_port, workers=1)

    def start_gateway(self, gateway_class, *args, **kwargs):
        """Starts a gateway that stop() will stop if its phase does not."""
        gateway = gateway_class(*args, **kwargs)
        self.gateways.append(gateway)
        return gateway

    def stop_gateway(self, gateway):
        if gateway in self.gateways:
            self.gateways.remove(gateway)
            gateway.stop()

    def redis_client(self):
        return redis.Redis(port=self.redis.port)

    # -- kube-sim and the controller ----------------------------------------

    def start_cluster(self, name, start_delay, start_jitter=0.0, backend="kube-sim"):
        """The Kubernetes API for a phase: kube-sim, or (backend "real") the
        real control plane of scripts/cluster.sh with our node agent, both
        with the controller's RBAC as shipped. The image bench/backend runs
        no server of its own: its pods are answered by the backend on their
        own address (the backend listens on every loopback address), so a
        thousand pods cost a thousand sleeping processes and nothing else.

        The API server and the nodes run on other machines in production;
        here they share two cores with the gateway, so they run at a lower
        priority (nice 10): a storm then measures what the gateway and
        controller do, not Python creating a thousand processes next to
        them. kube-sim records its pods' timeline itself; for the real API
        server a watch records it (pod_watch)."""
        directory = self.run_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        images = directory / "images.json"
        images.write_text(json.dumps({"images": {BACKEND_IMAGE: {"command": ["/bin/sleep", "infinity"]}}}))
        self.timeline = directory / "pod-timeline.jsonl"
        self.timeline.unlink(missing_ok=True)
        self.backend_name = backend
        access = servers.REPO / "manifests" / "base" / "access"
        rbac = ["apply", "-f", str(access / "namespaces.yaml"), "-f", str(access / "controller-rbac.yaml")]
        if backend == "real":
            try:
                self.kube = servers.RealCluster(directory, POD_CIDR, start_delay=str(start_delay),
                                                image_map=images, extra=["--start-jitter", str(start_jitter)])
            except AssertionError as error:
                raise servers.BenchError(f"the real control plane did not start: {error}") from None
            for pid_file in directory.glob("*.pid"):
                lower_priority(int(pid_file.read_text()))
            applied = self.kube.kubectl(*rbac)
            if applied.returncode != 0:
                raise servers.BenchError(f"kubectl apply of the controller's RBAC: {applied.stderr.strip()}")
            self.pod_watch = PodWatch(self.kube.kubeconfig, USER_NAMESPACE, self.timeline)
            return
        self.kube = servers.KubeSim(directory, POD_CIDR, start_delay=str(start_delay),
                                    extra=["--start-jitter", str(start_jitter),
                                           "--image-map", str(images), "--pod-timeline", str(self.timeline),
                                           "--service-account", "pod-router-system/pod-router-controller"])
        lower_priority(self.kube.process.pid)
        subprocess.run(["kubectl", "--kubeconfig", str(self.kube.kubeconfig), *rbac],
                       check=True, capture_output=True, timeout=60)

    def pod_template(self):
        """The shipped pod template (manifests/base/controller/pod-template.yaml), readiness
        probe and all, with the backend's image and port."""
        text = (servers.REPO / "manifests" / "base" / "controller" / "pod-template.yaml").read_text()
        text = text.replace("docker.io/nginxinc/nginx-unprivileged:1.28.0-alpine", BACKEND_IMAGE)
        text = text.replace("containerPort: 8080", f"containerPort: {self.backend_port}")
        path = self.run_dir / "pod-template.yaml"
        path.write_text(text)
        return path

    def start_controller(self, *flags):
        self.controller_port = servers.free_port()
        self.controller_log = open(self.run_dir / "controller.log", "ab")
        self.controller = subprocess.Popen(
            [str(servers.CONTROLLER), "run",
             "--kubeconfig", str(self.kube.service_account_kubeconfig()),
             "--namespace", USER_NAMESPACE, "--pod-template", str(self.pod_template()),
             "--redis", f"127.0.0.1:{self.redis.port}", "--amqp-url", f"amqp://127.0.0.1:{self.amqp_port}/",
             "--listen", f"127.0.0.1:{self.controller_port}", "--log-level", "warn", *flags],
            stdout=self.controller_log, stderr=subprocess.STDOUT)
        servers.wait_until(lambda: self._ready() or self.controller.poll() is not None,
                           timeout=60, what="the controller's /readyz")
        if self.controller.poll() is not None:
            raise servers.BenchError("the controller exited; see controller.log")

    def _ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.controller_port}/readyz", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def controller_metrics(self, prefix="pod_router_controller_"):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.controller_port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        values = {}
        for line in body.splitlines():
            if line.startswith(prefix):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def controller_rss_mib(self):
        for line in open(f"/proc/{self.controller.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def stop_controller(self):
        if self.controller is not None:
            servers.stop_process(self.controller, grace=40)
            self.controller_log.close()
            self.controller = None

    def stop_cluster(self):
        self.stop_controller()
        if self.pod_watch is not None:
            self.pod_watch.stop()
            self.pod_watch = None
        if self.kube is not None:
            self.kube.stop()
            self.kube = None

    def pod_timeline(self):
        """{pod name: {event: [at_ms, ...]}} from kube-sim's --pod-timeline
        or the real API server's watch."""
        return read_pod_timeline(self.timeline)

    def stop(self):
        for gateway in list(self.gateways):
            self.stop_gateway(gateway)
        self.stop_cluster()
        self.backend.stop()
        self._rabbitmq_context.__exit__(None, None, None)
        self.redis.stop()


def read_pod_timeline(path):
    """{pod name: {event: [at_ms, ...]}} from a pod timeline file (kube-sim's
    --pod-timeline, or PodWatch's)."""
    pods = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        pods.setdefault(entry["name"], {}).setdefault(entry["event"], []).append(entry["at_ms"])
    return pods
