"""The kubelet stand-in: runs each pod's containers on this machine.

A pod gets its own address in 127.0.0.0/8 and its containers listen there on
their container ports, so pods look to clients as they do in a cluster: same
port, different IPs. What a container runs comes from the image map
(images.py): the demo image ("httpd") is served for many pods at once by one
in-process server (DemoHost), any other mapped image runs as a real process
per container. Before the kubelet takes a pod, a stand-in for the scheduler
binds it to the node after --schedule-delay: spec.nodeName and the
PodScheduled condition in one write, as the binding subresource does. Status
is written back as a kubelet reports it: phase,
conditions, container states (waiting/running/terminated with reasons such
as ErrImagePull, ImagePullBackOff, CrashLoopBackOff), restart counts,
readiness from the pod's readiness probe, and events.

One thread owns all pod state; API threads only enqueue notifications.
Probes run in a small thread pool so a slow endpoint never stalls the loop.

The Kubelet reads and writes pods through a backend, so that the same class
runs kube-sim's node (StoreBackend, below: kube-sim's in-process store) and
the node agent of a real control plane (node_agent.ApiBackend: the API over
HTTPS). Every backend has:

    get_pod(namespace, name)       the pod as last known, or None
    update_pod_status(namespace, name, uid, mutate)
                                   read-modify-write: mutate(pod) changes
                                   pod["status"] in place; dropped silently
                                   when the pod is gone or has another uid
    remove_pod(namespace, name, uid)
                                   the final removal once every container
                                   has stopped (grace period 0, uid checked)
    create_event(namespace, event) a v1 Event, best effort

A backend may do these writes later, on threads of its own (the API
backend does), as long as those of one pod keep their order. Only the
StoreBackend also plays the scheduler (bind) and the namespace controller
(list_pods, mark_pod_deleted, purge_namespace): against a real control
plane, kube-scheduler and kube-controller-manager do that, and the Kubelet
runs with scheduler=False.
"""

import concurrent.futures
import copy
import http.client
import ipaddress
import logging
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import errors, resources
from .store import Store, now_rfc3339
from .validation import random_suffix

NODE_NAME = "kube-sim-node"
HOST_IP = "127.0.0.1"
TICK_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 300.0
PULL_BACKOFF_SECONDS = 5.0
VOLUME_RETRY_SECONDS = 2.0

log = logging.getLogger("kube-sim.kubelet")


@dataclass
class Probe:
    kind: str  # "http", "tcp" or "none"
    path: str = "/"
    port: int = 0
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass
class Container:
    name: str
    image: str
    port: int
    runtime: object  # images.Runtime, or None for an image that cannot be pulled
    readiness: Probe
    liveness: Probe
    env: dict = field(default_factory=dict)
    process: subprocess.Popen = None
    demo_key: str = ""
    container_id: str = ""
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    started_at: float = 0.0
    started_rfc: str = ""
    restart_count: int = 0
    ready: bool = False
    ever_started: bool = False
    next_start: float = 0.0
    readiness_due: float = 0.0
    liveness_due: float = 0.0
    readiness_successes: int = 0
    readiness_failures: int = 0
    liveness_failures: int = 0
    probe_in_flight: dict = field(default_factory=dict)
    exited_ok: bool = False


@dataclass
class Unbound:
    """A pod waiting for the scheduler: no kubelet state yet, only when it binds."""
    uid: str
    bind_at: float


class _NotBindable(Exception):
    """The pod changed under the scheduler: deleted, replaced, or bound already."""


class _Replaced(Exception):
    """The pod of that name is another one now (another uid)."""


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    ip: str
    restart_policy: str
    containers: list
    scheduled_at: str
    start_at: float
    pulled: bool = False
    terminating: bool = False
    kill_deadline: float = 0.0
    broken: bool = False
    pod: dict = None  # as admitted: what the volume hook prepares from
    volumes: concurrent.futures.Future = None  # the volume hook's work in flight
    volumes_retry_at: float = 0.0


def _pull_failure(image):
    return (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
            f'unpack image "{image}": not found in kube-sim\'s image map')


def _parse_probe(spec, ports):
    if not isinstance(spec, dict):
        return Probe("none")

    def resolve(port):
        if isinstance(port, str):
            return ports.get(port, 0)
        return int(port or 0)

    common = dict(
        initial_delay=float(spec.get("initialDelaySeconds", 0)),
        period=float(spec.get("periodSeconds", 10)),
        timeout=float(spec.get("timeoutSeconds", 1)),
        success_threshold=int(spec.get("successThreshold", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
    )
    if isinstance(spec.get("httpGet"), dict):
        get = spec["httpGet"]
        return Probe("http", path=get.get("path", "/"), port=resolve(get.get("port")), **common)
    if isinstance(spec.get("tcpSocket"), dict):
        return Probe("tcp", port=resolve(spec["tcpSocket"].get("port")), **common)
    return Probe("none")


def _run_probe(probe, ip):
    try:
        if probe.kind == "tcp":
            with socket.create_connection((ip, probe.port), timeout=probe.timeout):
                return True, ""
        connection = http.client.HTTPConnection(ip, probe.port, timeout=probe.timeout)
        try:
            connection.request("GET", probe.path, headers={"User-Agent": "kube-probe/1.32"})
            status = connection.getresponse().status
        finally:
            connection.close()
        if 200 <= status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {status}"
    except OSError as error:
        what = "dial tcp" if probe.kind == "tcp" else "Get"
        return False, f'{what} "{ip}:{probe.port}": {error}'


class AddressPool:
    """Pod IPs from the node's pod CIDR, in order, wrapping around: like a
    CNI's host-local IPAM, a released address is reused only much later."""

    def __init__(self, network="127.1.0.0/16"):
        self._network = ipaddress.ip_network(network)
        self._hosts = self._network.num_addresses - 2
        self._next = 0
        self._in_use = set()

    def take(self):
        for _ in range(self._hosts):
            candidate = str(self._network.network_address + 1 + self._next)
            self._next = (self._next + 1) % self._hosts
            if candidate not in self._in_use and not candidate.endswith(".255") and not candidate.endswith(".0"):
                self._in_use.add(candidate)
                return candidate
        raise RuntimeError("no pod addresses left")

    def release(self, address):
        self._in_use.discard(address)


class StoreBackend:
    """kube-sim's in-process store. Its writes happen at once, in the calling
    thread. Besides the pod reads and writes every backend has (see the
    module's docstring), it binds pods for the scheduler stand-in and cleans
    up deleted namespaces for the namespace controller stand-in."""

    def __init__(self, store):
        self.store = store

    def get_pod(self, namespace, name):
        try:
            return self.store.get(resources.pods(), namespace, name)
        except errors.ApiError:
            return None

    def update_pod_status(self, namespace, name, uid, mutate):
        def checked(pod):
            if pod["metadata"]["uid"] != uid:
                raise _Replaced()
            mutate(pod)
        try:
            self.store.update(resources.pods(), namespace, name, checked)
        except (errors.ApiError, _Replaced):
            pass  # deleted or replaced underneath us; termination handles the rest

    def remove_pod(self, namespace, name, uid):
        try:
            self.store.remove(resources.pods(), namespace, name, {"uid": uid})
        except errors.ApiError:
            pass  # already gone

    def create_event(self, namespace, event):
        try:
            self.store.create(resources.events(), namespace, event)
        except errors.ApiError:
            pass

    # --- the scheduler stand-in -------------------------------------------

    def bind(self, namespace, name, uid, node_name, bound_at):
        """The binding write, as kube-apiserver's pods/binding makes it:
        spec.nodeName and PodScheduled=True together, nothing else. Returns
        the bound pod, or None when it was deleted, replaced or bound already."""
        def bind(pod):
            if pod["metadata"]["uid"] != uid or pod["metadata"].get("deletionTimestamp") \
                    or pod["spec"].get("nodeName"):
                raise _NotBindable()
            pod["spec"]["nodeName"] = node_name
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": bound_at})
            status["conditions"] = conditions
        try:
            return self.store.update(resources.pods(), namespace, name, bind)
        except (errors.ApiError, _NotBindable):
            return None

    # --- the namespace controller stand-in --------------------------------

    def list_pods(self, namespace):
        pods, _ = self.store.list(resources.pods(), namespace)
        return pods

    def mark_pod_deleted(self, namespace, name, grace_seconds):
        self.store.mark_deleted(resources.pods(), namespace, name, grace_seconds)

    def purge_namespace(self, namespace):
        """Removes every other object of an emptied namespace, then the namespace."""
        for rtype in resources.ALL:
            if rtype.namespaced and rtype is not resources.pods():
                items, _ = self.store.list(rtype, namespace)
                for obj in items:
                    try:
                        self.store.remove(rtype, namespace, obj["metadata"]["name"])
                    except errors.ApiError:
                        pass
        try:
            self.store.remove(resources.namespaces(), "", namespace)
        except errors.ApiError:
            pass


class Kubelet:
    """One node's pods. backend: a StoreBackend (a kube-sim Store is taken
    as one) or node_agent.ApiBackend. scheduler: whether the scheduler
    stand-in binds unbound pods (needs backend.bind); off, the Kubelet only
    takes pods already bound to it. volumes: None, or a hook with
    prepare(pod) -> Future of {container name: {env name: value}}, done
    before the pod's containers start, and release(namespace, name, uid)
    once the pod is gone (node_agent.ServiceAccountVolumes)."""

    def __init__(self, backend, images, demo_host, state_dir, start_delay, crash_backoff,
                 pod_cidr="127.1.0.0/16", start_jitter=0.0, schedule_delay=0.0, schedule_jitter=0.0,
                 node_name=NODE_NAME, host_ip=HOST_IP, scheduler=True, volumes=None):
        if isinstance(backend, Store):
            backend = StoreBackend(backend)
        if scheduler and not hasattr(backend, "bind"):
            raise ValueError("the scheduler stand-in needs a backend that binds pods")
        self.backend = backend
        self.node_name = node_name
        self.host_ip = host_ip
        self.scheduler = scheduler
        self.volumes = volumes
        self.images = images
        self.demo_host = demo_host
        self.log_dir = Path(state_dir) / "pods"
        self.start_delay = start_delay
        self.start_jitter = start_jitter
        self.schedule_delay = schedule_delay
        self.schedule_jitter = schedule_jitter
        self.crash_backoff = crash_backoff
        self._inbox = queue.Queue()
        self._pods = {}
        self._unbound = {}  # (namespace, name) -> Unbound: the scheduler's queue
        self._addresses = AddressPool(pod_cidr)
        self._terminating_namespaces = set()
        self._probes = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="probe")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)

    # --- notifications from API threads -----------------------------------

    def pod_created(self, namespace, name, uid):
        self._inbox.put(("created", namespace, name, uid))

    def pod_deleted(self, namespace, name, uid):
        """A pod removed (never bound) or marked for deletion (bound)."""
        self._inbox.put(("deleted", namespace, name, uid))

    def namespace_deleted(self, name):
        self._inbox.put(("namespace-deleted", "", name, ""))

    def read_log(self, namespace, name, container):
        pod = self.backend.get_pod(namespace, name)
        if pod is None:
            raise errors.not_found(resources.pods(), name)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = container or (names[0] if len(names) == 1 else "")
        if container not in names:
            raise errors.bad_request(
                f"a container name must be specified for pod {name}, choose one of: {names}"
                if not container else f'container {container} is not valid for pod {name}'
            )
        path = self.log_dir / namespace / name / f"{container}.log"
        return path.read_bytes() if path.exists() else b""

    # --- lifecycle -----------------------------------------------------------

    def start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self, timeout=10.0):
        """Stops every pod process this kubelet started (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for run in list(self._pods.values()):
            for container in run.containers:
                self._signal(container, signal.SIGTERM)
        for run in list(self._pods.values()):
            for container in run.containers:
                if container.process is not None:
                    try:
                        container.process.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        self._signal(container, signal.SIGKILL)
                        container.process.wait(5)
                if container.demo_key:
                    self.demo_host.remove_pod(container.demo_key)
        self._probes.shutdown(wait=False, cancel_futures=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self._drain_inbox()
                now = time.monotonic()
                self._schedule(now)
                for key in list(self._pods):
                    run = self._pods.get(key)
                    if run is not None and not run.broken:
                        self._advance_guarded(run, now)
                self._advance_namespaces()
            except Exception:  # the loop must survive anything
                log.exception("kubelet loop error")
            self._stop.wait(TICK_SECONDS)

    def _advance_guarded(self, run, now):
        """A bug met by one pod parks that pod (RunContainerError), not the node."""
        try:
            self._advance(run, now)
        except Exception as error:
            log.exception("pod %s/%s: kubelet error", run.namespace, run.name)
            run.broken = True
            for container in run.containers:
                container.ready = False
                container.state = {"waiting": {"reason": "RunContainerError",
                                               "message": f"kube-sim kubelet error: {error}"}}
            self._write_status(run)

    def _drain_inbox(self):
        while True:
            try:
                what, namespace, name, uid = self._inbox.get_nowait()
            except queue.Empty:
                return
            if what == "created":
                self._enqueue(namespace, name, uid)
            elif what == "deleted":
                unbound = self._unbound.get((namespace, name))
                if unbound is not None and unbound.uid == uid:
                    del self._unbound[(namespace, name)]
                run = self._pods.get((namespace, name))
                if run is not None and run.uid == uid:
                    run.broken = False  # a parked pod can still be deleted
                    self._begin_termination(run)
            elif what == "namespace-deleted":
                self._terminating_namespaces.add(name)

    # --- scheduling ----------------------------------------------------------------

    def _enqueue(self, namespace, name, uid):
        """A new pod waits --schedule-delay (plus jitter) for the scheduler; one
        created with spec.nodeName set skips it, as in Kubernetes."""
        pod = self.backend.get_pod(namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            return  # gone, or replaced by a pod of the same name that has its own notice
        running = self._pods.get((namespace, name))
        if running is not None and running.uid == uid:
            return  # told twice: starting it again would run two copies
        if pod["spec"].get("nodeName"):
            # Even if already being deleted: its "deleted" notice follows and
            # ends it the way it ends any bound pod.
            self._admit(pod, now_rfc3339(), scheduled_by_us=False)
            return
        if not self.scheduler:
            return  # kube-scheduler binds it; a watch tells us when it is ours
        if pod["metadata"].get("deletionTimestamp"):
            return  # deleted while finalizers hold it: the scheduler skips it
        delay = self.schedule_delay + random.uniform(0.0, self.schedule_jitter)
        self._unbound[(namespace, name)] = Unbound(uid, time.monotonic() + delay)

    def _schedule(self, now):
        for key, unbound in list(self._unbound.items()):
            if now < unbound.bind_at:
                continue
            del self._unbound[key]
            try:
                self._bind(key[0], key[1], unbound.uid)
            except Exception:  # one pod's trouble must not stop the others
                log.exception("pod %s/%s: scheduler error", *key)

    def _bind(self, namespace, name, uid):
        bound_at = now_rfc3339()
        pod = self.backend.bind(namespace, name, uid, self.node_name, bound_at)
        if pod is not None:  # else deleted (or replaced) while it waited: nothing to run
            self._admit(pod, bound_at)

    # --- admission and start ----------------------------------------------------

    def _admit(self, pod, scheduled, scheduled_by_us=True):
        """The kubelet takes a pod bound to its node: the start delay counts from here."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        previous = self._pods.get((namespace, name))
        if previous is not None:
            # A pod of the same name that was force-deleted an instant ago
            # and has not finished stopping: end it now, or its processes
            # and address would be lost track of.
            self._begin_termination(previous, grace=0)
            self._advance_termination(previous, time.monotonic())
        ip = self._addresses.take()
        containers = []
        for spec in pod["spec"]["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in spec.get("ports") or [] if p.get("name")}
            port_list = [p["containerPort"] for p in spec.get("ports") or []]
            containers.append(Container(
                name=spec["name"], image=spec["image"], port=port_list[0] if port_list else 80,
                runtime=self.images.resolve(spec["image"]),
                readiness=_parse_probe(spec.get("readinessProbe"), ports),
                liveness=_parse_probe(spec.get("livenessProbe"), ports),
                env={e["name"]: str(e.get("value", "")) for e in spec.get("env") or []
                     if isinstance(e, dict) and "name" in e},
            ))
        run = PodRun(namespace, name, pod["metadata"]["uid"], ip, pod["spec"]["restartPolicy"],
                     containers, scheduled,
                     time.monotonic() + self.start_delay + random.uniform(0.0, self.start_jitter),
                     pod=pod)
        self._pods[(namespace, name)] = run
        if self.volumes is not None:
            run.volumes = self.volumes.prepare(pod)
        if scheduled_by_us:
            self._event(run, "Normal", "Scheduled",
                        f"Successfully assigned {namespace}/{name} to {self.node_name}",
                        component="default-scheduler")
        for container in containers:
            self._event(run, "Normal", "Pulling", f'Pulling image "{container.image}"', container)
        self._write_status(run)

    def _start_container(self, run, container, now):
        runtime = container.runtime
        container.ever_started = True
        self._event(run, "Normal", "Created", f"Created container {container.name}", container)
        try:
            if runtime.kind == "demo":
                container.demo_key = f"{run.namespace}/{run.name}/{container.name}"
                self.demo_host.add_pod(run.name, run.ip, container.port, key=container.demo_key)
                container.container_id = f"kube-sim://demo/{run.uid[:8]}-{container.name}"
            else:
                directory = self.log_dir / run.namespace / run.name
                directory.mkdir(parents=True, exist_ok=True)
                values = {"pod_ip": run.ip, "port": str(container.port), "pod_name": run.name,
                          "namespace": run.namespace, "container": container.name}
                argv = [part.format(**values) for part in runtime.command]
                env = dict(os.environ)
                env.update(runtime.env)
                env.update({"POD_NAME": run.name, "POD_NAMESPACE": run.namespace, "POD_IP": run.ip,
                            "PORT": str(container.port)})
                env.update(container.env)
                with open(directory / f"{container.name}.log", "ab") as output:
                    container.process = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                        env=env, start_new_session=True,
                    )
                container.container_id = f"kube-sim://{container.process.pid}"
        except (OSError, ValueError, KeyError) as error:
            self._container_exited(run, container, 128, "StartError", str(error), now)
            return
        container.started_at = now
        container.started_rfc = now_rfc3339()
        container.state = {"running": {"startedAt": container.started_rfc}}
        container.ready = container.readiness.kind == "none"
        container.readiness_due = now + container.readiness.initial_delay
        container.liveness_due = now + max(container.liveness.initial_delay, container.liveness.period)
        container.readiness_successes = container.readiness_failures = container.liveness_failures = 0
        self._event(run, "Normal", "Started", f"Started container {container.name}", container)

    # --- the per-tick state machine ---------------------------------------------

    def _advance(self, run, now):
        if run.terminating:
            self._advance_termination(run, now)
            return
        if now < run.start_at or not self._volumes_ready(run, now):
            return
        changed = False
        if not run.pulled:
            run.pulled = True
            for container in run.containers:
                if container.runtime is None:
                    container.state = {"waiting": {"reason": "ErrImagePull",
                                                   "message": _pull_failure(container.image)}}
                    container.next_start = now + PULL_BACKOFF_SECONDS
                    self._event(run, "Warning", "Failed", _pull_failure(container.image), container)
                else:
                    self._event(run, "Normal", "Pulled",
                                f'Container image "{container.image}" already present on machine', container)
            changed = True
        for container in run.containers:
            changed |= self._advance_container(run, container, now)
        if changed:
            self._write_status(run)

    def _volumes_ready(self, run, now):
        """Whether the volume hook has prepared the pod: its containers start
        only then (ContainerCreating meanwhile), as a kubelet waits for its
        volume mounts, and a failure is retried as FailedMount."""
        if run.volumes is None:
            if not run.volumes_retry_at:
                return True
            if now < run.volumes_retry_at:
                return False
            run.volumes_retry_at = 0.0
            run.volumes = self.volumes.prepare(run.pod)
        if not run.volumes.done():
            return False
        error = run.volumes.exception()
        run.volumes, prepared = None, run.volumes
        if error is not None:
            self._event(run, "Warning", "FailedMount", f"MountVolume.SetUp failed: {error}")
            run.volumes_retry_at = now + VOLUME_RETRY_SECONDS
            return False
        for container in run.containers:
            container.env.update(prepared.result().get(container.name) or {})
        return True

    def _advance_container(self, run, container, now):
        if container.runtime is None:
            if now < container.next_start:
                return False
            # ErrImagePull and ImagePullBackOff alternate, as on a node.
            if container.state["waiting"]["reason"] == "ErrImagePull":
                container.state = {"waiting": {"reason": "ImagePullBackOff",
                                               "message": f'Back-off pulling image "{container.image}"'}}
            else:
                container.state = {"waiting": {"reason": "ErrImagePull",
                                               "message": _pull_failure(container.image)}}
            container.next_start = now + PULL_BACKOFF_SECONDS
            return True
        if "running" not in container.state:
            if container.exited_ok or now < container.next_start:
                return False
            self._start_container(run, container, now)
            return True
        if container.process is not None and container.process.poll() is not None:
            code = container.process.returncode
            reason = "Completed" if code == 0 else "Error"
            if code < 0:  # killed by a signal, as a node shows it: 128 + signal
                code = 128 - code
            self._container_exited(run, container, code, reason, "", now)
            return True
        return self._probe(run, container, now)

    def _container_exited(self, run, container, code, reason, message, now):
        terminated = {"exitCode": code, "reason": reason, "startedAt": container.started_rfc or now_rfc3339(),
                      "finishedAt": now_rfc3339(), "containerID": container.container_id}
        if message:
            terminated["message"] = message
        container.process = None
        if container.demo_key:
            self.demo_host.remove_pod(container.demo_key)
            container.demo_key = ""
        container.ready = False
        restart = run.restart_policy == "Always" or (run.restart_policy == "OnFailure" and code != 0)
        if not restart:
            container.state = {"terminated": terminated}
            container.exited_ok = True
            return
        container.last_state = {"terminated": terminated}
        delay = 0.0 if container.restart_count == 0 else min(
            self.crash_backoff * 2 ** (container.restart_count - 1), MAX_BACKOFF_SECONDS)
        container.restart_count += 1
        container.next_start = now + delay
        if delay > 0:
            container.state = {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(delay)}s restarting failed container={container.name} "
                           f"pod={run.name}_{run.namespace}({run.uid})",
            }}
            self._event(run, "Warning", "BackOff", "Back-off restarting failed container", container)
        else:
            container.state = {"waiting": {"reason": "ContainerCreating"}}

    def _probe(self, run, container, now):
        changed = False
        for which, probe, due_attr in (("readiness", container.readiness, "readiness_due"),
                                       ("liveness", container.liveness, "liveness_due")):
            if probe.kind == "none":
                continue
            future = container.probe_in_flight.get(which)
            if future is not None:
                if not future.done():
                    continue
                del container.probe_in_flight[which]
                ok, message = future.result()
                changed |= self._probe_result(run, container, which, probe, ok, message, now)
            elif now >= getattr(container, due_attr):
                setattr(container, due_attr, now + probe.period)
                container.probe_in_flight[which] = self._probes.submit(_run_probe, probe, run.ip)
        return changed

    def _probe_result(self, run, container, which, probe, ok, message, now):
        if "running" not in container.state:
            return False
        if which == "readiness":
            if ok:
                container.readiness_failures = 0
                container.readiness_successes += 1
                if not container.ready and container.readiness_successes >= probe.success_threshold:
                    container.ready = True
                    return True
                return False
            container.readiness_successes = 0
            container.readiness_failures += 1
            if container.readiness_failures == 1 or container.ready:
                self._event(run, "Warning", "Unhealthy", f"Readiness probe failed: {message}", container)
            if container.ready and container.readiness_failures >= probe.failure_threshold:
                container.ready = False
                return True
            return False
        if ok:
            container.liveness_failures = 0
            return False
        container.liveness_failures += 1
        self._event(run, "Warning", "Unhealthy", f"Liveness probe failed: {message}", container)
        if container.liveness_failures >= probe.failure_threshold:
            self._event(run, "Normal", "Killing",
                        f"Container {container.name} failed liveness probe, will be restarted", container)
            self._signal(container, signal.SIGKILL)
            if container.process is not None:
                container.process.wait(5)
            self._container_exited(run, container, 137, "Error", "", now)
            return True
        return False

    # --- termination -------------------------------------------------------------

    def _begin_termination(self, run, grace=None):
        """grace: seconds from SIGTERM to SIGKILL; by default the pod's
        deletionGracePeriodSeconds, 0 when the pod is gone already."""
        if grace is None:
            pod = self.backend.get_pod(run.namespace, run.name)
            grace = 0
            if pod is not None and pod["metadata"]["uid"] == run.uid:
                grace = pod["metadata"].get("deletionGracePeriodSeconds", 30)
        run.terminating = True
        run.kill_deadline = time.monotonic() + grace
        for container in run.containers:
            if container.process is not None or container.demo_key:
                self._event(run, "Normal", "Killing", f"Stopping container {container.name}", container)
            self._signal(container, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            if container.demo_key:
                # The demo server has nothing to drain: it stops at once.
                self.demo_host.remove_pod(container.demo_key)
                container.demo_key = ""

    def _signal(self, container, signum):
        if container.process is not None and container.process.poll() is None:
            try:
                os.killpg(container.process.pid, signum)
            except ProcessLookupError:
                pass

    def _advance_termination(self, run, now):
        alive = [c for c in run.containers if c.process is not None and c.process.poll() is None]
        if alive and now < run.kill_deadline:
            return
        for container in alive:
            self._signal(container, signal.SIGKILL)
            container.process.wait(5)
        for container in run.containers:
            if "terminated" not in container.state:
                code = 0
                if container.process is not None:
                    code = container.process.returncode
                    code = 128 - code if code < 0 else code
                container.state = {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "startedAt": container.started_rfc or now_rfc3339(), "finishedAt": now_rfc3339(),
                    "containerID": container.container_id,
                }}
            container.ready = False
            container.process = None
        self._pods.pop((run.namespace, run.name), None)
        self._addresses.release(run.ip)
        if self.volumes is not None:
            self.volumes.release(run.namespace, run.name, run.uid)
        self._write_status(run)
        self.backend.remove_pod(run.namespace, run.name, run.uid)

    def _advance_namespaces(self):
        """The namespace controller stand-in (StoreBackend only: namespace
        notices come from kube-sim's API alone)."""
        for namespace in list(self._terminating_namespaces):
            pods = self.backend.list_pods(namespace)
            for pod in pods:
                name = pod["metadata"]["name"]
                self._unbound.pop((namespace, name), None)
                if not pod["metadata"].get("deletionTimestamp"):
                    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
                    if (namespace, name) in self._pods:
                        self.backend.mark_pod_deleted(namespace, name, grace)
                        self._begin_termination(self._pods[(namespace, name)])
                    else:
                        self.backend.remove_pod(namespace, name, pod["metadata"]["uid"])
            if pods:
                continue
            self.backend.purge_namespace(namespace)
            self._terminating_namespaces.discard(namespace)

    # --- status and events ---------------------------------------------------------

    def _write_status(self, run):
        containers = []
        for container in run.containers:
            entry = {
                "name": container.name,
                "image": container.image,
                "imageID": "" if container.runtime is None else f"kube-sim/{container.image}",
                "ready": container.ready,
                "restartCount": container.restart_count,
                "started": "running" in container.state,
                # Copies: a backend may apply the write later, on another thread.
                "state": copy.deepcopy(container.state),
                "lastState": copy.deepcopy(container.last_state),
            }
            if container.container_id:
                entry["containerID"] = container.container_id
            containers.append(entry)
        all_ready = bool(containers) and all(c["ready"] for c in containers)
        running = any("running" in c.state for c in run.containers)
        terminated = all("terminated" in c.state for c in run.containers)
        if terminated and run.containers:
            failed = any(c.state["terminated"]["exitCode"] != 0 for c in run.containers)
            phase = "Failed" if failed else "Succeeded"
        elif running or any(c.ever_started for c in run.containers):
            phase = "Running"
        else:
            phase = "Pending"
        unready = [c["name"] for c in containers if not c["ready"]]
        not_ready_reason = "ContainersNotReady" if unready else None

        def condition(kind, ok, reason=None, message=None):
            entry = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                     "lastTransitionTime": run.scheduled_at}
            if reason and not ok:
                entry["reason"] = reason
                entry["message"] = message
            return entry

        message = f"containers with unready status: [{' '.join(unready)}]"

        host_ip = self.host_ip

        def update(pod):
            status = pod.setdefault("status", {})
            old_conditions = {c["type"]: c for c in status.get("conditions") or []}
            conditions = [
                condition("Initialized", True),
                condition("Ready", all_ready, not_ready_reason, message),
                condition("ContainersReady", all_ready, not_ready_reason, message),
                condition("PodScheduled", True),
            ]
            for entry in conditions:
                old = old_conditions.get(entry["type"])
                if old and old["status"] == entry["status"]:
                    entry["lastTransitionTime"] = old["lastTransitionTime"]
                elif old:
                    entry["lastTransitionTime"] = now_rfc3339()
            # Conditions others own (DisruptionTarget, readiness gates) stay.
            ours = {entry["type"] for entry in conditions}
            conditions += [c for c in old_conditions.values() if c["type"] not in ours]
            status.update({
                "phase": phase,
                "conditions": conditions,
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "podIP": run.ip,
                "podIPs": [{"ip": run.ip}],
                "startTime": run.scheduled_at,
                "containerStatuses": containers,
            })

        self.backend.update_pod_status(run.namespace, run.name, run.uid, update)

    def _event(self, run, kind, reason, message, container=None, component="kubelet"):
        involved = {"kind": "Pod", "namespace": run.namespace, "name": run.name, "uid": run.uid,
                    "apiVersion": "v1"}
        if container is not None:
            involved["fieldPath"] = f"spec.containers{{{container.name}}}"
        now = now_rfc3339()
        event = {
            "metadata": {"name": f"{run.name}.{random_suffix(16)}", "namespace": run.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": component, "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": kind,
            "eventTime": None,
            "reportingComponent": component,
            "reportingInstance": self.node_name,
        }
        self.backend.create_event(run.namespace, event)
