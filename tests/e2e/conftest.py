"""The whole system, as `make run` starts it (scripts/stack.sh), on private
ports and a private run directory, with a short idle timeout: the seed's
"How to Test" and the failures around it, end to end over HTTP."""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from kubernetes import client as kube_client
from kubernetes import config as kube_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from servers import free_broker_port, free_port  # noqa: E402

IDLE_TIMEOUT = 6  # seconds
USERS_NS = "pod-router-users"


class Stack:
    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.port = free_port()
        self.controller_port = free_port()
        self.env = dict(os.environ,
                        POD_ROUTER_RUN_DIR=str(self.run_dir),
                        POD_ROUTER_PORT=str(self.port),
                        POD_ROUTER_REDIS_PORT=str(free_port()),
                        POD_ROUTER_AMQP_PORT=str(free_broker_port()),
                        POD_ROUTER_KUBE_PORT=str(free_port()),
                        POD_ROUTER_CONTROLLER_PORT=str(self.controller_port),
                        POD_ROUTER_POD_CIDR=f"127.{40 + os.getpid() % 20}.0.0/16",
                        POD_ROUTER_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
                        POD_ROUTER_REAP_INTERVAL="1s",
                        POD_ROUTER_RECONCILE_INTERVAL="5s",
                        POD_ROUTER_ORPHAN_GRACE="5s",
                        POD_ROUTER_WAIT_TIMEOUT="30s",
                        POD_ROUTER_KUBE_START_DELAY="0.5")

    def script(self, *args, check=True, timeout=180):
        return subprocess.run([str(REPO / "scripts" / "stack.sh"), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def up(self):
        done = self.script("up", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        kube_config.load_kube_config(config_file=str(self.run_dir / "kube-sim" / "kubeconfig"))
        self.core = kube_client.CoreV1Api()

    def get(self, user=None, path="/", host="local.gateway.com", timeout=40, headers=None):
        """One request as the seed's curl sends it: (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            sent = {"Host": host, **(headers or {})}
            if user is not None:
                sent["X-User-ID"] = user
            connection.request("GET", path, headers=sent)
            reply = connection.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read().decode(errors="replace")
        finally:
            connection.close()

    def pods(self):
        return {pod.metadata.name: pod for pod in self.core.list_namespaced_pod(USERS_NS).items}

    def controller_metrics(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.controller_port, timeout=5)
        try:
            connection.request("GET", "/metrics")
            body = connection.getresponse().read().decode()
        finally:
            connection.close()
        return {line.split()[0]: float(line.split()[1]) for line in body.splitlines()
                if line and not line.startswith("#")}

    def gone_or_going(self, name):
        """True once the pod is deleted or being deleted (one snapshot: a
        pod can vanish between two reads)."""
        pod = self.pods().get(name)
        return pod is None or pod.metadata.deletion_timestamp is not None

    def log(self, component):
        path = self.run_dir / "logs" / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pod_name(self, identity):
        controller = REPO / "build" / "controller" / "pod-router-controller"
        return subprocess.run([str(os.environ.get("POD_ROUTER_CONTROLLER", controller)), "pod-name",
                               identity], capture_output=True, text=True, check=True).stdout.split()[-1]


@pytest.fixture(scope="session")
def stack():
    # rabbitmq-server runs as the rabbitmq user: the run directory must be
    # reachable by it, which pytest's private temporary folders are not.
    run_dir = Path(tempfile.mkdtemp(prefix="pod-router-e2e-"))
    run_dir.chmod(0o755)
    world = Stack(run_dir)
    try:
        world.up()
        yield world
    finally:
        world.script("down", check=False)
        # nothing left behind
        leftover = subprocess.run(["pgrep", "-f", str(world.run_dir)], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", f"processes left: {leftover.stdout}"
        for component in ("nginx", "controller"):
            text = world.log(component)
            for sign in ("[alert]", "[crit]", "[emerg]", "Sanitizer", "terminate called"):
                assert sign not in text, f"{sign} in the {component} log"
        shutil.rmtree(run_dir, ignore_errors=True)
