"""Real servers for the Python integration tests: a redis-server on a free
TCP port, a private rabbitmq-server (scripts/rabbitmq-node.sh) and a
Kubernetes API (kube-sim, or the real control plane of scripts/cluster.sh
when POD_ROUTER_CLUSTER=real), each started for real and stopped by the
fixture that owns it."""

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pika
import redis

from polling import wait_until

REPO = Path(__file__).resolve().parents[2]
RABBITMQ_SCRIPT = REPO / "scripts" / "rabbitmq-node.sh"
KUBE_SIM = REPO / "scripts" / "kube-sim" / "kube-sim"
CLUSTER_SH = REPO / "scripts" / "cluster.sh"
# Which Kubernetes API the tiers run against: "kube-sim" (default) or
# "real" (CTest runs each cluster tier once per backend).
CLUSTER = os.environ.get("POD_ROUTER_CLUSTER", "kube-sim")
ON_REAL_CLUSTER = CLUSTER == "real"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: self._ping(client), what="redis-server")

    @staticmethod
    def _ping(client):
        try:
            return client.ping()
        except redis.exceptions.ConnectionError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_broker_port():
    """A port for a private RabbitMQ node, with the two after it (its Erlang
    distribution and epmd) free too; below the ephemeral range, where other
    tests' outgoing connections cannot take it between this check and the
    broker's bind."""
    while True:
        port = random.randrange(20000, 27000)
        if all(_free(port + offset) for offset in range(3)):
            return port


class RabbitMQ:
    def __init__(self, directory):
        self.directory = Path(directory)
        # A port another process takes between our check and the broker's
        # bind fails the start: try elsewhere, a bounded number of times.
        for attempt in range(3):
            self.port = free_broker_port()
            try:
                self.start()
                return
            except subprocess.CalledProcessError:
                if attempt == 2:
                    raise

    def start(self):
        subprocess.run([str(RABBITMQ_SCRIPT), "start", str(self.directory), str(self.port)],
                       check=True, timeout=120)

    def restart(self):
        """Stops and starts the node, keeping its durable queues and
        persistent messages, as a real broker's restart does."""
        subprocess.run([str(RABBITMQ_SCRIPT), "restart", str(self.directory), str(self.port)],
                       check=True, timeout=180)

    def stop(self):
        subprocess.run([str(RABBITMQ_SCRIPT), "stop", str(self.directory), str(self.port)],
                       check=False, timeout=120)

    def channel(self):
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port))
        return connection, connection.channel()


class KubeSim:
    """kube-sim on a free port, with its state (kubeconfigs, CA, pod logs)
    in `directory`; pods get addresses from `pod_cidr`."""

    def __init__(self, directory, pod_cidr, start_delay="0.2", extra=()):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pod_cidr = pod_cidr
        self.args = ["--start-delay", start_delay, *extra]
        self.process = None
        self.start()

    @property
    def kubeconfig(self):
        return self.directory / "kubeconfig"

    def service_account_kubeconfig(self, namespace="pod-router-system", name="pod-router-controller"):
        return self.directory / f"kubeconfig.{namespace}.{name}"

    def start(self):
        self.kubeconfig.unlink(missing_ok=True)
        self.log = open(self.directory / "kube-sim.log", "ab")
        self.process = subprocess.Popen(
            [str(KUBE_SIM), "--state-dir", str(self.directory), "--port", "0",
             "--pod-cidr", self.pod_cidr, *self.args],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.kubeconfig.exists() or self.process.poll() is not None,
                   timeout=30, what="kube-sim")
        assert self.process.poll() is None, (self.directory / "kube-sim.log").read_text()[-3000:]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


class RealCluster:
    """The real control plane (scripts/cluster.sh) on free ports, state in
    `directory`, its node agent's pods in `pod_cidr`. The same face as
    KubeSim: kubeconfig, service_account_kubeconfig(), stop()."""

    def __init__(self, directory, pod_cidr, start_delay="0.2", image_map=None, node=True, extra=()):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pod_cidr = pod_cidr
        self.api_port = free_port()
        self.etcd_port = free_port_pair()
        self.args = ["--dir", str(self.directory), "--api-port", str(self.api_port),
                     "--etcd-port", str(self.etcd_port), "--pod-cidr", pod_cidr,
                     "--start-delay", start_delay, "--crash-backoff", "1", *extra]
        if image_map is not None:
            self.args += ["--image-map", str(image_map)]
        if not node:
            self.args.append("--no-node")
        self.kubectl_path = str(Path(self.run_build("--print-path")).parent / "kubectl")
        self.start()

    @staticmethod
    def run_build(*args):
        built = subprocess.run([str(CLUSTER_SH.parent / "cluster" / "build.sh"), *args],
                               capture_output=True, text=True, timeout=60)
        assert built.returncode == 0, ("the control plane is not built: run scripts/install-deps.sh "
                                       f"(or scripts/cluster/build.sh)\n{built.stderr}")
        return built.stdout.strip()

    def kubectl(self, *args, kubeconfig=None, timeout=60, stdin=None):
        """kubectl of the same release as the API server."""
        return subprocess.run([self.kubectl_path, "--kubeconfig", str(kubeconfig or self.kubeconfig),
                               *args], capture_output=True, text=True, timeout=timeout, input=stdin)

    @property
    def kubeconfig(self):
        return self.directory / "kubeconfig"

    def run(self, *args, timeout=180):
        return subprocess.run([str(CLUSTER_SH), *args, *self.args], capture_output=True,
                              text=True, timeout=timeout)

    def start(self):
        started = self.run("up")
        assert started.returncode == 0, f"cluster.sh up failed:\n{started.stderr[-4000:]}"

    def service_account_kubeconfig(self, namespace="pod-router-system", name="pod-router-controller",
                                   duration="1h"):
        """A kubeconfig with a TokenRequest token for the account, made on
        first use (the account must exist: the local overlay makes it)."""
        path = self.directory / f"kubeconfig.{namespace}.{name}"
        if not path.exists():
            made = self.run("token", f"{namespace}/{name}", "--duration", duration, timeout=60)
            assert made.returncode == 0, f"cluster.sh token failed:\n{made.stderr}"
        return path

    def stop(self):
        stopped = self.run("down", timeout=120)
        assert stopped.returncode == 0, stopped.stderr


def free_port_pair():
    """A free port whose next port is free too (etcd's client and peer ports)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _free(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


def kubernetes_api(directory, pod_cidr, start_delay="0.2"):
    """The API the tiers run against: kube-sim or the real control plane."""
    if ON_REAL_CLUSTER:
        return RealCluster(directory, pod_cidr, start_delay)
    return KubeSim(directory, pod_cidr, start_delay)


@contextlib.contextmanager
def private_rabbitmq():
    """A RabbitMQ node for one test session, removed afterwards. It runs as
    the rabbitmq user, so its folder must be reachable by it, which pytest's
    private temporary folders are not."""
    directory = Path(tempfile.mkdtemp(prefix="pod-router-rabbitmq-"))
    directory.chmod(0o755)
    broker = RabbitMQ(directory / "node")
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
