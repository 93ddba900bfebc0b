"""The local stack's own lifecycle (scripts/stack.sh), on stacks of this
module's own, not the session's (issue 17, item 4). `down` leaves nothing
running: no epmd on the AMQP port + 2, no process the stack started; and a
`status` after it starts none. `status` says DOWN for a component that does
not answer and `up` says ready only for one that does, right after a kill -9
and while the killed process is a zombie; `up` brings it back.

This module makes its process a child subreaper (prctl), for two reasons.
The stack's processes outlive the stack.sh that started them, so they are
adopted by this process rather than by init: a killed one whose parent
does not reap it stays a zombie here until the end of the module (the case
of an init slow to reap, deterministically); and after `down` every process
the stack left behind, epmd included (it daemonizes), is a descendant of
this process.

POD_ROUTER_STACK_SH runs another stack.sh (an older one, say: it needs the
repository around it) against these tests."""

import ctypes
import http.client
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from conftest import REPO, USERS_NS, Stack, started_stack
from polling import wait_until
from servers import ON_REAL_CLUSTER

STACK_SH = os.environ.get("POD_ROUTER_STACK_SH", str(REPO / "scripts" / "stack.sh"))
PR_SET_CHILD_SUBREAPER = 36
# The stack's Kubernetes API as `stack.sh status` names it: kube-sim, or the
# real control plane, whose process that answers is kube-apiserver.
KUBE = "cluster" if ON_REAL_CLUSTER else "kube-sim"


def set_child_subreaper(on):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def stat_of(pid):
    """(state, parent pid) of PID, or None once it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def processes():
    """{pid: (state, parent pid)} of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = stat_of(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def reap_adopted_zombies():
    for pid, (state, parent) in processes().items():
        if parent == os.getpid() and state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def live_descendants():
    """Every process below this one that has not exited: with this process a
    subreaper, whatever the stack left behind."""
    table = processes()
    children = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        if table[pid][0] not in "ZX":
            found.append(pid)
    return found


def describe(pid):
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {arguments.decode(errors='replace')}"


def listening(port):
    """ss's lines for a TCP socket listening on PORT (any address)."""
    return subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


class LifecycleStack(Stack):
    def script(self, *args, check=True, timeout=180):
        return subprocess.run([STACK_SH, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def up(self):
        # Unlike Stack.up, no global Kubernetes configuration: the session's
        # stack keeps its own.
        done = self.script("up", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def pid(self, component):
        if component == "cluster":  # cluster.sh keeps its processes' pid files
            return int((self.kube_dir / "kube-apiserver.pid").read_text())
        return int((self.run_dir / "pids" / f"{component}.pid").read_text())

    def ports(self):
        amqp = int(self.env["POD_ROUTER_AMQP_PORT"])
        ports = {"gateway": self.port, "controller": self.controller_port,
                 "redis": int(self.env["POD_ROUTER_REDIS_PORT"]),
                 KUBE: int(self.env["POD_ROUTER_KUBE_PORT"]),
                 "amqp": amqp, "erlang distribution": amqp + 1, "epmd": amqp + 2}
        if ON_REAL_CLUSTER:
            etcd = int(self.env["POD_ROUTER_ETCD_PORT"])
            ports.update({"etcd": etcd, "etcd peers": etcd + 1})
        return ports

    def status_of(self, component):
        """The word `status` says for COMPONENT: up or DOWN."""
        done = self.script("status", check=False)
        for line in done.stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[1] == component:
                return words[0]
        raise AssertionError(f"no {component} in: {done.stdout}{done.stderr}")

    def answers(self, component):
        """Whether COMPONENT answers, asked the way a client asks it."""
        try:
            if component == "redis":
                return self.redis(socket_timeout=3).ping()
            if component == KUBE:
                api = kube_config.new_client_from_config(config_file=str(self.kube_dir / "kubeconfig"))
                try:
                    names = [ns.metadata.name for ns in
                             kube_client.CoreV1Api(api).list_namespace(_request_timeout=5).items]
                finally:
                    api.close()
                return USERS_NS in names  # the manifests were applied too
            if component == "controller":
                return self._get("127.0.0.1", self.controller_port, "/readyz") == 200
            if component == "nginx":
                return self._get("127.0.0.1", self.port, "/pod-router/metrics",
                                 host="local.gateway.com") == 200
        except Exception:  # noqa: BLE001 (any failure to answer is "no")
            return False
        raise ValueError(component)

    @staticmethod
    def _get(address, port, path, host=None):
        connection = http.client.HTTPConnection(address, port, timeout=5)
        try:
            connection.request("GET", path, headers={"Host": host or address})
            return connection.getresponse().status
        finally:
            connection.close()


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    set_child_subreaper(True)
    try:
        yield
    finally:
        set_child_subreaper(False)
        reap_adopted_zombies()


def lifecycle_stack():
    return started_stack(LifecycleStack, prefix="pod-router-lifecycle-")


@pytest.fixture(scope="module")
def own_stack(subreaper):
    with lifecycle_stack() as world:
        yield world


@pytest.fixture
def fresh_stack(subreaper):
    """A stack just started, on ports of its own (no epmd ran on them), and
    the processes below this one before it (another stack's): not its."""
    before = set(live_descendants())
    with lifecycle_stack() as world:
        world.others = before
        yield world


# First in the module, so that no other stack of this module runs meanwhile.
def test_down_leaves_nothing_behind(fresh_stack):
    stack = fresh_stack
    ports = stack.ports()
    for what, port in ports.items():
        assert listening(port), f"{what} ({port}) not listening before down"
    done = stack.script("down", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # each component stopped what it started
    assert "left processes behind" not in done.stdout, done.stdout

    def leftovers():
        left = [f"{what} port {port}: {listening(port)}" for what, port in ports.items()
                if listening(port)]
        left += [f"process {describe(pid)}" for pid in live_descendants()
                 if pid not in stack.others]
        marker = f"POD_ROUTER_RUN_DIR={stack.run_dir}".encode()
        for pid in processes():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if pid != os.getpid() and (marker in environ.split(b"\0")
                                       or str(stack.run_dir).encode() in cmdline):
                left.append(f"process with the run directory {describe(pid)}")
        return sorted(set(left))

    # down has returned: what it stopped is gone already, not going
    assert leftovers() == []

    # status answers DOWN for all, and starts nothing (rabbitmqctl would
    # start an epmd of its own on the AMQP port + 2)
    done = stack.script("status", check=False)
    assert done.returncode == 1
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["DOWN"] * 5, done.stdout
    time.sleep(0.5)  # an epmd the status started daemonizes meanwhile
    assert leftovers() == []
    # and down again is harmless
    assert stack.script("down", check=False).returncode == 0
    assert leftovers() == []


def ready_line(output, component):
    return re.search(rf"^\s*ready\s+{re.escape(component)}\b", output, re.MULTILINE)


def assert_back(stack, component, killed_pid, output):
    """After `up`: COMPONENT said ready, answers at once (no waiting here:
    up returned only once it did), runs as a new process, and the whole
    stack serves a user."""
    assert ready_line(output, component), output
    assert stack.answers(component), f"{component} said ready but does not answer:\n{output}"
    assert stack.pid(component) != killed_pid
    assert stack.status_of(component) == "up"
    status, headers, body = stack.get(f"lifecycle-{component}-{time.monotonic_ns()}")
    assert status == 200, body


@pytest.mark.parametrize("component", ["redis", "controller"])
def test_a_component_killed_is_down_until_up_brings_it_back(own_stack, component):
    stack = own_stack
    assert stack.answers(component)
    pid = stack.pid(component)
    os.kill(pid, signal.SIGKILL)
    # at once: its process may not even be reaped yet
    assert stack.status_of(component) == "DOWN"
    assert not stack.answers(component)
    output = stack.up()
    assert_back(stack, component, pid, output)


def kill_leaving_a_zombie(stack, component):
    """SIGKILLs COMPONENT so that its pid stays a zombie: its parent (the
    shell that launched it, if there is one) goes first, so that the process
    is adopted by this process, which does not reap it during the module."""
    pid = stack.pid(component)
    launcher_file = stack.run_dir / "pids" / f"{component}.launcher"
    if launcher_file.exists():
        os.kill(int(launcher_file.read_text()), signal.SIGKILL)
        wait_until(lambda: stat_of(pid)[1] == os.getpid(), timeout=5,
                   what=f"{component} adopted by the test")
    assert stat_of(pid)[1] == os.getpid(), "not this process's to reap: no zombie"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stat_of(pid)[0] == "Z", timeout=5, what=f"{component} a zombie")
    return pid


@pytest.mark.parametrize("component", ["redis", KUBE, "controller", "nginx"])
def test_a_zombie_is_down_and_up_replaces_it(own_stack, component):
    stack = own_stack
    assert stack.answers(component)
    pid = kill_leaving_a_zombie(stack, component)
    # kill -0 still succeeds on the pid in the pid file
    os.kill(pid, 0)
    assert stack.status_of(component) == "DOWN"
    output = stack.up()
    assert stat_of(pid)[0] == "Z"  # still there: up did not wait it out
    assert_back(stack, component, pid, output)
