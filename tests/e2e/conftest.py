"""The whole system, as `make run` starts it (scripts/stack.sh), on private
ports and a private run directory, with a short idle timeout: the seed's
"How to Test" and the failures around it, end to end over HTTP."""

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis
from kubernetes import client as kube_client
from kubernetes import config as kube_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from polling import wait_until  # noqa: E402
from servers import ON_REAL_CLUSTER, free_broker_port, free_port, free_port_pair  # noqa: E402

IDLE_TIMEOUT = 6  # seconds
USERS_NS = "pod-router-users"


class Stack:
    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.port = free_port()
        self.controller_port = free_port()
        self.env = dict(os.environ,
                        POD_ROUTER_RUN_DIR=str(self.run_dir),
                        POD_ROUTER_IDENTITY="header",
                        POD_ROUTER_PORT=str(self.port),
                        POD_ROUTER_REDIS_PORT=str(free_port()),
                        POD_ROUTER_AMQP_PORT=str(free_broker_port()),
                        POD_ROUTER_KUBE_PORT=str(free_port()),
                        POD_ROUTER_ETCD_PORT=str(free_port_pair()),
                        POD_ROUTER_CONTROLLER_PORT=str(self.controller_port),
                        POD_ROUTER_POD_CIDR=f"127.{40 + os.getpid() % 20}.0.0/16",
                        POD_ROUTER_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
                        POD_ROUTER_REAP_INTERVAL="1s",
                        POD_ROUTER_RECONCILE_INTERVAL="5s",
                        POD_ROUTER_ORPHAN_GRACE="5s",
                        POD_ROUTER_WAIT_TIMEOUT="30s",
                        POD_ROUTER_KUBE_START_DELAY="0.5",
                        # a new pod unbound that long: the "creating" stage
                        # shows on the waiting page (test_warm_pool.py)
                        POD_ROUTER_KUBE_SCHEDULE_DELAY="0.5")

    def script(self, *args, check=True, timeout=180):
        return subprocess.run([str(REPO / "scripts" / "stack.sh"), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def up(self):
        done = self.script("up", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        self.up_output = done.stdout
        kube_config.load_kube_config(config_file=str(self.kube_dir / "kubeconfig"))
        self.core = kube_client.CoreV1Api()

    @property
    def kube_dir(self):
        """The Kubernetes API's state: kube-sim's, or the real cluster's
        (POD_ROUTER_CLUSTER=real, passed on to stack.sh)."""
        return self.run_dir / ("cluster" if ON_REAL_CLUSTER else "kube-sim")

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

    def secret(self, name):
        """The first line of the stack's secrets/NAME (redis-password,
        amqp-credentials, identity-secret), which scripts/stack.sh created."""
        return (self.run_dir / "secrets" / name).read_text().splitlines()[0]

    def amqp_credentials(self):
        """(user, password) of the stack's RabbitMQ user."""
        user, password = self.secret("amqp-credentials").split(":", 1)
        return user, password

    def redis(self, **options):
        """A client of the stack's Redis, with its password."""
        return redis.Redis(port=int(self.env["POD_ROUTER_REDIS_PORT"]),
                           password=self.secret("redis-password"), **options)

    # Files under the run directory meant to hold secrets: the secrets
    # themselves and the two servers' configuration files (all mode 0600).
    SECRET_HOLDERS = ("secrets/", "redis/redis.conf", "rabbitmq/rabbitmq.conf")

    def processes(self):
        """Every process of the stack: those in pids/, RabbitMQ's launcher,
        Erlang VM and epmd, and all their descendants (nginx's workers,
        process-backed pods, Erlang's helpers)."""
        roots = set()
        for pidfile in [*(self.run_dir / "pids").glob("*.pid"),
                        *(self.run_dir / "rabbitmq").glob("*.pid"),
                        *(self.run_dir / "cluster").glob("*.pid")]:
            try:
                text = pidfile.read_text().strip()
            except FileNotFoundError:
                continue
            if text.isdigit():
                roots.add(int(text))
        children = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid not in found and Path(f"/proc/{pid}").exists():
                found.add(pid)
                todo.extend(children.get(pid, []))
        return found

    def where_secrets_show(self, secrets):
        """Where any of SECRETS ({name: value}) can be read besides the
        files meant for them: any file under the run directory (every log,
        nginx's configuration and logs, RabbitMQ's and Redis's data), the
        arguments of every process on the machine (ps), and the environment
        and arguments of every process of the stack. [] when nowhere."""
        found = []

        def look(place, data):
            for name, value in secrets.items():
                if value.encode() in data:
                    found.append(f"{name} in {place}")

        for path in sorted(self.run_dir.rglob("*")):
            relative = path.relative_to(self.run_dir).as_posix()
            if path.is_symlink() or not path.is_file() or any(
                    relative == holder or relative.startswith(holder)
                    for holder in self.SECRET_HOLDERS):
                continue
            try:
                look(relative, path.read_bytes())
            except FileNotFoundError:
                continue  # a temporary file, gone meanwhile
        look("ps -eo args", subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                           check=True).stdout)
        for pid in sorted(self.processes()):
            for part in ("environ", "cmdline"):
                try:
                    data = Path(f"/proc/{pid}/{part}").read_bytes()
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    continue  # gone meanwhile
                look(f"/proc/{pid}/{part} ({comm})", data)
        return found

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


@contextlib.contextmanager
def started_stack(kind=None, prefix="pod-router-e2e-", after_down=None):
    """A stack of `kind` (Stack or a subclass) in a new run directory, up
    until the block ends, then down, after_down(world) called, and its
    directory removed."""
    # rabbitmq-server runs as the rabbitmq user: the run directory must be
    # reachable by it, which pytest's private temporary folders are not.
    run_dir = Path(tempfile.mkdtemp(prefix=prefix))
    run_dir.chmod(0o755)
    world = (kind or Stack)(run_dir)
    try:
        world.up()
        yield world
    finally:
        world.script("down", check=False)
        try:
            if after_down:
                after_down(world)
        finally:
            # POD_ROUTER_E2E_KEEP=1 keeps it (logs, kubeconfigs) to debug a failure.
            if os.environ.get("POD_ROUTER_E2E_KEEP") != "1":
                shutil.rmtree(run_dir, ignore_errors=True)


def left_nothing_behind(world):
    leftover = subprocess.run(["pgrep", "-f", str(world.run_dir)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", f"processes left: {leftover.stdout}"
    for component in ("nginx", "controller"):
        text = world.log(component)
        for sign in ("[alert]", "[crit]", "[emerg]", "Sanitizer", "terminate called"):
            assert sign not in text, f"{sign} in the {component} log"


@pytest.fixture(scope="session")
def stack():
    with started_stack(after_down=left_nothing_behind) as world:
        yield world


@contextlib.contextmanager
def second_gateway(stack, name, edit):
    """Another nginx from the stack's nginx.conf (same module, Redis, broker
    and controller) in run_dir/nginx-NAME on a port of its own, with its
    configuration passed through edit(conf) -> conf first. Its port; its
    error log must hold no alert when it stops."""
    source = stack.run_dir / "nginx"
    prefix = stack.run_dir / f"nginx-{name}"
    prefix.mkdir()
    shutil.copy(source / "identity.conf", prefix / "identity.conf")
    port = free_port()
    conf = (source / "nginx.conf").read_text().replace(str(source) + "/", str(prefix) + "/")
    conf = edit(conf.replace(f"listen 127.0.0.1:{stack.port}", f"listen 127.0.0.1:{port}"))
    assert str(source) + "/" not in conf and f":{stack.port}" not in conf
    (prefix / "nginx.conf").write_text(conf)
    with open(prefix / "stderr.log", "w") as stderr:
        nginx = subprocess.Popen([stack.env.get("POD_ROUTER_NGINX", "/usr/sbin/nginx"), "-p", str(prefix),
                                  "-c", str(prefix / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        def listening():
            assert nginx.poll() is None, (prefix / "stderr.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, timeout=10, what=f"the {name} gateway listening")
        yield port
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(timeout=15)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(timeout=5)
    log = (prefix / "error.log").read_text() if (prefix / "error.log").exists() else ""
    for sign in ("[alert]", "[crit]", "[emerg]"):
        assert sign not in log, f"{sign} in the {name} gateway's error log:\n{log[-3000:]}"
