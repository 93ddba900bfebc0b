"""Phase 2 on the real node: the same cold start as on kube-sim and the real
control plane (cold_start.measure), with everything as a user deploys it
(scripts/node-stack.sh): the gateway, Redis, RabbitMQ and the controller as
pods of the images built here, and each user's pod a real container that
the kubelet starts through containerd. The pod readiness is then a real
container's start (the demo's Python server) plus its first readiness
probe; the overhead is again what remains of the first byte.

Only the pub/sub case: the gateway runs the shipped configuration, which
does not poll."""

import os
import subprocess
import tempfile
from pathlib import Path

from . import servers
from .cold_start import measure
from .pod_watch import PodWatch
from .system import USER_NAMESPACE, read_pod_timeline

NODE_STACK = servers.REPO / "scripts" / "node-stack.sh"


class NodeStack:
    """The system on the real node, for one phase: what cold_start.measure
    asks of a system (pod_timeline, backend_name)."""

    backend_name = "the real node"

    def __init__(self, log):
        self.log = log
        self.run_dir = Path(tempfile.mkdtemp(prefix="podbench-node-"))
        self.port = servers.free_port()
        self.env = dict(os.environ, POD_ROUTER_RUN_DIR=str(self.run_dir), POD_ROUTER_PORT=str(self.port),
                        POD_ROUTER_KUBE_PORT=str(servers.free_port()),
                        POD_ROUTER_ETCD_PORT=str(servers.free_port_pair()))
        self.timeline = self.run_dir / "pod-timeline.jsonl"
        self.timeline.touch()
        self.watch = None

    def script(self, action):
        done = subprocess.run([str(NODE_STACK), action], env=self.env, capture_output=True, text=True,
                              timeout=1800)
        if done.returncode != 0:
            raise servers.BenchError(f"node-stack.sh {action}: {done.stderr[-2000:]}")

    def start(self):
        self.log("starting the system on the real node (scripts/node-stack.sh up)")
        self.script("up")
        self.watch = PodWatch(self.run_dir / "cluster" / "kubeconfig", USER_NAMESPACE, self.timeline)

    def stop(self):
        if self.watch is not None:
            self.watch.stop()
        self.script("down")

    def pod_timeline(self):
        return read_pod_timeline(self.timeline)

    def token(self, identity):
        secret = self.run_dir / "manifests" / "overlays" / "plain-nginx" / "secrets" / "identity-secret"
        done = subprocess.run([str(servers.CONTROLLER), "sign", "--secret-file", str(secret), identity],
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()


def run(settings, log):
    node = NodeStack(log)
    try:
        node.start()
        return {"notify": measure(node, node.port, "cold-node", settings.node_cold_users, log, token=node.token)}
    finally:
        node.stop()
