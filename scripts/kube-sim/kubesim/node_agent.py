"""The node agent: kube-sim's kubelet stand-in as the node of a real
control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-
manager; scripts/cluster.sh), talking to the API server over HTTPS with the
node's own credentials.

What it does, in order:

  1. registers the Node (POST /api/v1/nodes; an existing one is kept) and
     writes its status: Ready, capacity, addresses, nodeInfo, spec.podCIDR;
  2. keeps the node alive from a thread of its own: the Lease in
     kube-node-lease renewed every --lease-duration/4 seconds, the node
     status patched every 30 s, so that a slow pod never delays either;
  3. lists and watches the pods bound to the node (spec.nodeName=NAME) and
     hands what it sees to the Kubelet (kubelet.py) as pod_created /
     pod_deleted notices, each at most once per pod uid; the Kubelet runs
     the pods exactly as kube-sim does, each on its own address from
     --pod-cidr, and writes their status, events and final removal through
     ApiBackend, on a few threads of its own;
  4. fills projected service-account token volumes (TokenRequest, the
     kube-root-ca.crt config map, the downward API) into
     STATE_DIR/pods/NAMESPACE/POD/volumes/VOLUME/, refreshes each token
     when 80% of its lifetime has passed, and tells each container
     process where its token volume is in the environment variable
     POD_ROUTER_SERVICEACCOUNT_DIR (the directory holding token, ca.crt and
     namespace, which a real pod finds at
     /var/run/secrets/kubernetes.io/serviceaccount);
  5. on SIGTERM or SIGINT stops the watch and every pod process and exits 0.
     The Node stays registered (as a kubelet's does): it goes NotReady when
     its lease expires, and Ready again when the agent comes back.

It does only what the Node authorizer and the NodeRestriction admission
plugin allow a kubelet: its own Node and Lease, status and deletion of pods
bound to it, events, and tokens and config maps for those pods.
"""

import argparse
import base64
import collections
import concurrent.futures
import copy
import http.client
import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from .images import ImageMap
from .process import begin
from .kubelet import Kubelet

KUBELET_VERSION = "v1.34.4-pod-router-node"
RUNTIME_VERSION = "pod-router-node://1"
USER_AGENT = f"pod-router-node-agent/{KUBELET_VERSION} (linux/amd64)"
HOST_IP = "127.0.0.1"
MAX_PODS = "500"  # more than a kubelet's 110, so that the benchmarks' bursts fit

REQUEST_TIMEOUT_SECONDS = 10.0
# The server ends a watch after timeoutSeconds; the socket waits a little
# longer, so that silence past that means a dead connection.
WATCH_TIMEOUT_SECONDS = 240
WATCH_SOCKET_SLACK_SECONDS = 30.0
RELIST_BACKOFF_SECONDS = (0.5, 30.0)  # first and largest wait before listing again
NODE_STATUS_INTERVAL_SECONDS = 30.0
STATUS_WRITE_ATTEMPTS = 5
DELETE_ATTEMPTS = 8
POD_WRITE_THREADS = 8
TOKEN_REFRESH_FRACTION = 0.8
TOKEN_RETRY_SECONDS = 10.0
VOLUME_THREADS = 8
# Every pod of a namespace reads the same kube-root-ca.crt: one read serves
# a burst of them.
CONFIGMAP_CACHE_SECONDS = 10.0
SERVICEACCOUNT_DIR_ENV = "POD_ROUTER_SERVICEACCOUNT_DIR"
SERVICEACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

log = logging.getLogger("node-agent")


def _now_micro():
    """A MicroTime, as Lease.spec.renewTime wants it."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _quote(segment):
    return urllib.parse.quote(segment, safe="")


def _pod_path(namespace, name):
    return f"/api/v1/namespaces/{_quote(namespace)}/pods/{_quote(name)}"


# --- kubeconfig ------------------------------------------------------------


class KubeconfigError(ValueError):
    pass


@dataclass
class KubeConfig:
    """What the agent needs of a kubeconfig: where the API is and who we are."""
    server: str
    ca_file: str = None
    ca_data: bytes = None  # PEM
    insecure: bool = False
    client_cert: str = None
    client_key: str = None
    client_cert_data: bytes = None
    client_key_data: bytes = None
    token: str = None
    token_file: str = None


def _named(document, section, name):
    for entry in document.get(section) or ():
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    raise KubeconfigError(f"no {section[:-1]} named {name!r}")


def load_kubeconfig(path, context=None):
    """Reads a kubeconfig in JSON (kubectl's YAML is a superset; cluster.sh
    writes JSON). Relative file names count from the kubeconfig's folder, as
    kubectl reads them."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise KubeconfigError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise KubeconfigError(f"{path} is not JSON (the node agent reads JSON kubeconfigs): {error}") from None
    if not isinstance(document, dict):
        raise KubeconfigError(f"{path}: expected a JSON object")
    context_name = context or document.get("current-context")
    if not context_name:
        raise KubeconfigError(f"{path}: no current-context")
    try:
        context_entry = _named(document, "contexts", context_name).get("context") or {}
        cluster = _named(document, "clusters", context_entry.get("cluster")).get("cluster") or {}
        user = _named(document, "users", context_entry.get("user")).get("user") or {} \
            if context_entry.get("user") else {}
    except KubeconfigError as error:
        raise KubeconfigError(f"{path}: {error}") from None

    def file_name(value):
        if not value:
            return None
        return str(value if os.path.isabs(value) else path.parent / value)

    def data(value, what):
        if not value:
            return None
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise KubeconfigError(f"{path}: {what} is not base64") from None

    if not cluster.get("server"):
        raise KubeconfigError(f"{path}: the cluster has no server")
    config = KubeConfig(
        server=cluster["server"],
        ca_file=file_name(cluster.get("certificate-authority")),
        ca_data=data(cluster.get("certificate-authority-data"), "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        client_cert=file_name(user.get("client-certificate")),
        client_key=file_name(user.get("client-key")),
        client_cert_data=data(user.get("client-certificate-data"), "client-certificate-data"),
        client_key_data=data(user.get("client-key-data"), "client-key-data"),
        token=user.get("token") or None,
        token_file=file_name(user.get("tokenFile")),
    )
    if bool(config.client_cert or config.client_cert_data) != bool(config.client_key or config.client_key_data):
        raise KubeconfigError(f"{path}: a client certificate needs its key, and a key its certificate")
    return config


# --- the API client -------------------------------------------------------------


class ApiError(Exception):
    """An answer of 400 or more (status, and the Status object's reason),
    or no answer at all (status 0)."""

    def __init__(self, status, reason, message):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


def _ssl_context(config):
    context = ssl.create_default_context(
        cafile=config.ca_file, cadata=config.ca_data.decode() if config.ca_data else None)
    if config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.client_cert_data:
        # ssl loads a certificate chain from files only: a private copy for
        # the moment of loading.
        with tempfile.TemporaryDirectory(prefix="node-agent-") as folder:
            cert, key = Path(folder) / "client.crt", Path(folder) / "client.key"
            cert.write_bytes(config.client_cert_data)
            key.write_bytes(config.client_key_data)
            context.load_cert_chain(cert, key)
    elif config.client_cert:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


class WatchStream:
    """One watch response: iterate for its events; abort() from another
    thread ends the iteration."""

    def __init__(self, connection, response):
        self._connection = connection
        self._response = response

    def __iter__(self):
        while True:
            line = self._response.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)

    def abort(self):
        sock = self._connection.sock
        if sock is not None:
            try:
                # The plain socket's shutdown, not SSLSocket's: that one
                # unwraps the TLS object the reading thread is using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self._connection.close()


class ApiClient:
    """Requests to the API server over keep-alive connections, any thread;
    a connection is used by one request at a time."""

    MAX_IDLE_CONNECTIONS = 16

    def __init__(self, config, timeout=REQUEST_TIMEOUT_SECONDS):
        url = urllib.parse.urlsplit(config.server)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise KubeconfigError(f"server {config.server!r} is not an http(s) URL")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._context = _ssl_context(config) if self._https else None
        self._config = config
        self._timeout = timeout
        self._idle = []
        self._lock = threading.Lock()
        self._token = config.token
        self._token_read_at = None

    def _authorization(self):
        if self._config.token_file:
            # Re-read now and then, as client-go does: the file may be rotated.
            if self._token_read_at is None or time.monotonic() - self._token_read_at > 60:
                try:
                    self._token = Path(self._config.token_file).read_text().strip()
                    self._token_read_at = time.monotonic()
                except OSError as error:
                    log.warning("cannot read the token file %s: %s", self._config.token_file, error)
        return f"Bearer {self._token}" if self._token else None

    def _headers(self, content_type=None):
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        authorization = self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _connect(self, timeout):
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(self._timeout), False

    def _give_back(self, connection):
        with self._lock:
            if len(self._idle) < self.MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def request(self, method, path, body=None, content_type="application/json"):
        """The decoded JSON answer; raises ApiError."""
        payload = None if body is None else json.dumps(body).encode()
        headers = self._headers(content_type if payload is not None else None)
        for attempt in (1, 2):
            connection, reused = self._take()
            try:
                connection.request(method, self._prefix + path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ssl.SSLEOFError) as error:
                connection.close()
                if reused and attempt == 1:
                    continue  # a kept-alive connection the server had closed: nothing was sent
                raise ApiError(0, "Unreachable", f"{method} {path}: {error}") from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise ApiError(0, "Unreachable", f"{method} {path}: {error}") from None
            if response.will_close:
                connection.close()
            else:
                self._give_back(connection)
            break
        try:
            document = json.loads(data) if data else {}
        except ValueError:
            document = {}
        if response.status >= 400:
            raise ApiError(response.status, document.get("reason") or response.reason,
                           document.get("message") or data[:300].decode(errors="replace"))
        return document

    def watch(self, path, timeout_seconds):
        """Opens a watch (path has watch=1 and timeoutSeconds); raises ApiError."""
        connection = self._connect(timeout_seconds + WATCH_SOCKET_SLACK_SECONDS)
        try:
            connection.request("GET", self._prefix + path, headers=self._headers())
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ApiError(0, "Unreachable", f"GET {path}: {error}") from None
        if response.status != 200:
            try:
                data = response.read()
                document = json.loads(data) if data else {}
            except (OSError, http.client.HTTPException, ValueError):
                document = {}
            connection.close()
            raise ApiError(response.status, document.get("reason") or response.reason,
                           document.get("message") or "watch refused")
        return WatchStream(connection, response)


# --- the Kubelet's backend ---------------------------------------------------


class OrderedWorkers:
    """Runs jobs on a few threads: those of one key one at a time, in the
    order given. A job submitted with coalesce=KIND replaces a job of the
    same kind still waiting at the end of its key's line: a newer status
    makes an older one that was never written moot."""

    def __init__(self, threads, name):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = {}  # key -> deque of (kind, job)
        self._ready = collections.deque()  # keys with work and no thread on them
        self._wakeup = threading.Condition(self._lock)
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{index}", daemon=True)
                         for index in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key, job, coalesce=None):
        with self._lock:
            line = self._pending.get(key)
            if line is None:
                line = self._pending[key] = collections.deque()
                self._ready.append(key)
                self._wakeup.notify()
            if coalesce is not None and line and line[-1][0] == coalesce:
                line[-1] = (coalesce, job)
            else:
                line.append((coalesce, job))

    def _run(self):
        while True:
            with self._lock:
                while not self._ready and not self._stopped:
                    self._wakeup.wait()
                if self._stopped:
                    return
                key = self._ready.popleft()
                _, job = self._pending[key].popleft()
            try:
                job()
            except Exception:  # one write's trouble must not stop the others
                log.exception("write for %s failed", key)
            with self._lock:
                if self._pending[key]:
                    self._ready.append(key)
                    self._wakeup.notify()
                else:
                    del self._pending[key]
                    if not self._pending:
                        self._idle.notify_all()

    def wait_idle(self, timeout):
        """Waits until every job submitted so far has run; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self):
        with self._lock:
            self._stopped = True
            self._wakeup.notify_all()


class ApiBackend:
    """The Kubelet's backend on a real API server (see kubelet.py's
    docstring for the interface). Reads come from the pod watch's cache
    (PodTracker), with no request; writes go out on a few threads of their
    own, those of one pod in order, so that the Kubelet's loop never waits
    for the network. No bind: kube-scheduler binds."""

    def __init__(self, client, tracker, threads=POD_WRITE_THREADS):
        self._client = client
        self._tracker = tracker
        self._writes = OrderedWorkers(threads, "pod-writes")
        # Each pod's answer to our last status write: often newer than the
        # watch's copy, which has not seen that write yet.
        self._written_lock = threading.Lock()
        self._written = {}  # (namespace, name) -> pod

    def get_pod(self, namespace, name):
        return self._tracker.get_pod(namespace, name)

    def update_pod_status(self, namespace, name, uid, mutate):
        self._writes.submit((namespace, name), lambda: self._write_status(namespace, name, uid, mutate),
                            coalesce="status")

    def remove_pod(self, namespace, name, uid):
        self._writes.submit((namespace, name), lambda: self._delete(namespace, name, uid))

    def create_event(self, namespace, event):
        key = ("events", namespace, event["involvedObject"]["name"])
        self._writes.submit(key, lambda: self._post_event(namespace, event))

    def flush(self, timeout):
        """Waits for the writes not yet made (at exit); False if some were left."""
        return self._writes.wait_idle(timeout)

    def stop(self):
        self._writes.stop()

    def _known_copy(self, namespace, name, uid):
        """The newest copy of the pod we hold (the watch's, or our last
        write's answer), or None. resourceVersions are compared as numbers,
        which etcd's are; a stale pick costs one 409 and a GET."""
        candidates = [self._tracker.get_pod(namespace, name)]
        with self._written_lock:
            candidates.append(self._written.get((namespace, name)))
        best, best_version = None, -1
        for pod in candidates:
            if pod is None or pod["metadata"]["uid"] != uid:
                continue
            try:
                version = int(pod["metadata"]["resourceVersion"])
            except (KeyError, ValueError):
                version = 0
            if version > best_version:
                best, best_version = pod, version
        return None if best is None else copy.deepcopy(best)

    def _write_status(self, namespace, name, uid, mutate):
        """mutate, then PUT .../status with the resourceVersion of the copy
        mutated: first the newest copy we hold, after a conflict one read
        afresh (GET). Gone or replaced: nothing to write."""
        path = _pod_path(namespace, name)
        pod = self._known_copy(namespace, name, uid)
        for attempt in range(1, STATUS_WRITE_ATTEMPTS + 1):
            try:
                if pod is None:
                    pod = self._client.request("GET", path)
                    if pod["metadata"]["uid"] != uid:
                        return
                before = copy.deepcopy(pod.get("status"))
                mutate(pod)
                if pod.get("status") == before:
                    return
                written = self._client.request("PUT", path + "/status", pod)
                with self._written_lock:
                    self._written[(namespace, name)] = written
                return
            except ApiError as error:
                pod = None
                if error.status == 404:
                    return
                if error.status == 409:
                    continue  # written in between (the scheduler, a client, our stale copy): read again
                # 403 too: the Node authorizer learns of a pod bound to us a
                # moment after our watch does.
                if error.status not in (0, 403, 429) and error.status < 500:
                    log.warning("pod %s/%s: status refused: %s", namespace, name, error)
                    return
                log.info("pod %s/%s: status write failed (attempt %d): %s", namespace, name, attempt, error)
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
        log.warning("pod %s/%s: status not written after %d attempts", namespace, name, STATUS_WRITE_ATTEMPTS)

    def _forget_written(self, namespace, name, uid):
        with self._written_lock:
            pod = self._written.get((namespace, name))
            if pod is not None and pod["metadata"]["uid"] == uid:
                del self._written[(namespace, name)]

    def _delete(self, namespace, name, uid):
        self._forget_written(namespace, name, uid)
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                   "preconditions": {"uid": uid}}
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            try:
                self._client.request("DELETE", _pod_path(namespace, name), options)
                return
            except ApiError as error:
                if error.status in (404, 409):
                    return  # gone already, or the name is another pod's now
                if error.status not in (0, 429) and error.status < 500:
                    log.warning("pod %s/%s: delete refused: %s", namespace, name, error)
                    return
                log.info("pod %s/%s: delete failed (attempt %d): %s", namespace, name, attempt, error)
                time.sleep(min(0.2 * 2 ** attempt, 10.0))
        log.warning("pod %s/%s: not deleted after %d attempts", namespace, name, DELETE_ATTEMPTS)

    def _post_event(self, namespace, event):
        try:
            self._client.request("POST", f"/api/v1/namespaces/{_quote(namespace)}/events", event)
        except ApiError as error:
            # Best effort, as a kubelet's event recorder: a namespace being
            # deleted refuses new events (403), for one.
            log.debug("event %s for %s/%s dropped: %s", event["reason"], namespace,
                      event["involvedObject"]["name"], error)


# --- from the pod watch to the Kubelet's notices ---------------------------------


@dataclass
class _TrackedPod:
    namespace: str
    name: str
    pod: dict
    admitted: bool  # told to the Kubelet as created
    deletion_told: bool = False


def _terminal(pod):
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class PodTracker:
    """What the pod watch has shown, turned into notices, each at most once
    per uid, in the order to act on them:

      ("created", namespace, name, uid)  a uid not seen before: run it
      ("deleted", namespace, name, uid)  deletion began (deletionTimestamp),
                                         or the pod is gone (DELETED, or
                                         missing from a new list)
      ("remove", namespace, name, uid)   a pod that had finished
                                         (Succeeded/Failed) before we first
                                         saw it is being deleted: nothing
                                         runs, only the removal is left

    A finished pod is not run again (after an agent restart, say): the API
    refuses to move a pod out of a terminal phase. Also the pods' cache
    (get_pod). Thread-safe: the watch writes, the Kubelet reads."""

    FORGOTTEN_LIMIT = 50000

    def __init__(self):
        self._lock = threading.Lock()
        self._pods = {}  # uid -> _TrackedPod
        self._uid_of = {}  # (namespace, name) -> uid
        # Uids whose end we have seen, so that a late event cannot bring one
        # back to life (and start it twice).
        self._forgotten = collections.OrderedDict()

    def get_pod(self, namespace, name):
        """The pod as last seen (do not modify it), or None."""
        with self._lock:
            uid = self._uid_of.get((namespace, name))
            return None if uid is None else self._pods[uid].pod

    def known_uids(self):
        with self._lock:
            return set(self._pods)

    def observe(self, pod):
        """An ADDED or MODIFIED pod, or one in a list."""
        with self._lock:
            return self._observe(pod)

    def gone(self, pod):
        """A DELETED pod."""
        with self._lock:
            return self._gone(pod["metadata"]["uid"])

    def relist(self, pods):
        """A full list: what it holds is observed, what it lacks is gone."""
        notices = []
        with self._lock:
            listed = set()
            for pod in pods:
                listed.add(pod["metadata"]["uid"])
                notices += self._observe(pod)
            for uid in [uid for uid in self._pods if uid not in listed]:
                notices += self._gone(uid)
        return notices

    def _observe(self, pod):
        meta = pod["metadata"]
        uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
        if uid in self._forgotten:
            return []
        notices = []
        tracked = self._pods.get(uid)
        if tracked is None:
            tracked = self._pods[uid] = _TrackedPod(namespace, name, pod, admitted=not _terminal(pod))
            self._uid_of[(namespace, name)] = uid
            if tracked.admitted:
                notices.append(("created", namespace, name, uid))
        else:
            tracked.pod = pod
            self._uid_of[(namespace, name)] = uid
        if meta.get("deletionTimestamp") and not tracked.deletion_told:
            tracked.deletion_told = True
            notices.append(("deleted" if tracked.admitted else "remove", namespace, name, uid))
        return notices

    def _gone(self, uid):
        self._forgotten[uid] = True
        while len(self._forgotten) > self.FORGOTTEN_LIMIT:
            self._forgotten.popitem(last=False)
        tracked = self._pods.pop(uid, None)
        if tracked is None:
            return []
        key = (tracked.namespace, tracked.name)
        if self._uid_of.get(key) == uid:
            del self._uid_of[key]
        if tracked.admitted and not tracked.deletion_told:
            return [("deleted", tracked.namespace, tracked.name, uid)]
        return []


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class PodWatcher:
    """Lists, then watches, the pods bound to the node, on a thread of its
    own; after an error it lists again, waiting longer each time in a row."""

    def __init__(self, client, node_name, tracker, deliver):
        self._client = client
        self._selector = urllib.parse.quote(f"spec.nodeName={node_name}", safe="")
        self._tracker = tracker
        self._deliver = deliver  # called with each notice, in order
        self._stopping = threading.Event()
        self._stream = None
        self._stream_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self.synced = threading.Event()  # set after the first list

    def start(self):
        self._thread.start()

    def stop(self, timeout=5.0):
        self._stopping.set()
        with self._stream_lock:
            if self._stream is not None:
                self._stream.abort()
        self._thread.join(timeout)

    def _run(self):
        backoff = RELIST_BACKOFF_SECONDS[0]
        while not self._stopping.is_set():
            try:
                version = self._list()
                backoff = RELIST_BACKOFF_SECONDS[0]
                while not self._stopping.is_set():
                    version = self._watch(version)
                continue
            except _Expired:
                log.info("pod watch expired; listing again")
                continue
            except ApiError as error:
                if self._stopping.is_set():
                    return
                log.warning("pod watch failed: %s; listing again in %.1f s", error, backoff)
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("pod watch failed; listing again in %.1f s", backoff)
            self._stopping.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, RELIST_BACKOFF_SECONDS[1])

    def _list(self):
        listed = self._client.request("GET", f"/api/v1/pods?fieldSelector={self._selector}")
        for notice in self._tracker.relist(listed.get("items") or []):
            self._deliver(notice)
        self.synced.set()
        return listed["metadata"]["resourceVersion"]

    def _watch(self, version):
        """One watch from version until the server ends it; returns the
        newest version seen."""
        timeout = int(WATCH_TIMEOUT_SECONDS * random.uniform(1.0, 1.25))
        path = (f"/api/v1/pods?fieldSelector={self._selector}&watch=1&allowWatchBookmarks=true"
                f"&resourceVersion={_quote(version)}&timeoutSeconds={timeout}")
        try:
            stream = self._client.watch(path, timeout)
        except ApiError as error:
            if error.status == 410:
                raise _Expired() from None
            raise
        with self._stream_lock:
            self._stream = stream
        if self._stopping.is_set():
            stream.abort()
        try:
            for event in stream:
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired()
                    raise ApiError(obj.get("code") or 0, obj.get("reason") or "WatchError",
                                   obj.get("message") or "watch error")
                version = obj["metadata"]["resourceVersion"]
                if kind in ("ADDED", "MODIFIED"):
                    notices = self._tracker.observe(obj)
                elif kind == "DELETED":
                    notices = self._tracker.gone(obj)
                else:
                    continue  # BOOKMARK: only the version
                for notice in notices:
                    self._deliver(notice)
        except (OSError, http.client.HTTPException, ValueError) as error:
            if self._stopping.is_set():
                return version
            raise ApiError(0, "WatchBroken", f"pod watch broke: {error}") from None
        finally:
            with self._stream_lock:
                self._stream = None
            stream.close()
        return version


# --- the Node and its heartbeat ---------------------------------------------------


def _read_first(path, default=""):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def describe_machine(state_dir, cpu=None, memory=None, max_pods=MAX_PODS):
    """This machine as a Node shows it: capacity and nodeInfo's facts. cpu
    and memory, when given, replace what the machine has: the agent's pods
    are processes without limits, so what the scheduler may place here is a
    setting (the pod template's 50m requests would stop 2 cores at 40 pods)."""
    memory_kib = 0
    for line in _read_first("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    os_image = "Linux"
    for line in _read_first("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.partition("=")[2].strip().strip('"')
    try:
        disk_bytes = shutil.disk_usage(state_dir).total
    except OSError:
        disk_bytes = 0
    return {
        "cpu": cpu or str(os.cpu_count() or 1),
        "memory": memory or f"{memory_kib}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": str(disk_bytes),
        "kernel": os.uname().release,
        "os_image": os_image,
        "machine_id": _read_first("/etc/machine-id"),
        "boot_id": _read_first("/proc/sys/kernel/random/boot_id"),
    }


NODE_CONDITIONS = {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False",
                   "Ready": "True"}


def transition_times(node):
    """Each condition's lastTransitionTime for the status we report: kept
    where the Node already shows our status, now where it shows another
    (the node lifecycle controller's Unknown after the lease lapsed, say)."""
    now = _now_rfc3339()
    shown = {c.get("type"): c for c in ((node or {}).get("status") or {}).get("conditions") or []}
    times = {}
    for kind, status in NODE_CONDITIONS.items():
        current = shown.get(kind) or {}
        same = current.get("status") == status and current.get("lastTransitionTime")
        times[kind] = current["lastTransitionTime"] if same else now
    return times


def node_status(node_name, machine, transitions, host_ip=HOST_IP):
    """The Node's status as the agent reports it: Ready, no pressure.
    transitions: lastTransitionTime by condition type (transition_times)."""
    now = _now_rfc3339()

    def condition(kind, status, reason, message):
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": transitions.get(kind, now)}

    resources = {"cpu": machine["cpu"], "memory": machine["memory"], "pods": machine.get("pods", MAX_PODS),
                 "ephemeral-storage": machine["ephemeral-storage"]}
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": node_name}],
        "nodeInfo": {
            # One machine may be several nodes: a systemUUID per node name.
            "machineID": machine["machine_id"],
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node_name}.pod-router-node")),
            "bootID": machine["boot_id"],
            "kernelVersion": machine["kernel"],
            "osImage": machine["os_image"],
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_object(node_name, pod_cidr, machine, transitions, host_ip=HOST_IP):
    """The Node the agent registers."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name,
            "labels": {
                "kubernetes.io/hostname": node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": node_status(node_name, machine, transitions, host_ip),
    }


def lease_object(node_name, node_uid, duration_seconds):
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": "kube-node-lease",
            # Goes with the Node, when the Node goes.
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration_seconds,
                 "renewTime": _now_micro()},
    }


class NodeHeartbeat:
    """Registers the Node, then keeps it alive on a thread of its own: the
    Lease every lease_duration/4 seconds, the status every 30 s."""

    def __init__(self, client, node_name, pod_cidr, machine, lease_duration, host_ip=HOST_IP):
        self._client = client
        self.node_name = node_name
        self._pod_cidr = pod_cidr
        self._machine = machine
        self._lease_duration = lease_duration
        self._host_ip = host_ip
        self._node_uid = ""
        self._lease = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def register(self, stopping):
        """Creates the Node (or keeps the one there) and reports it Ready;
        tries until it works or stopping is set. Returns whether it did."""
        backoff = 0.5
        while not stopping.is_set():
            try:
                self._register_once()
                return True
            except ApiError as error:
                log.warning("cannot register node %s: %s; again in %.1f s", self.node_name, error, backoff)
            stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        return False

    def _register_once(self):
        node = node_object(self.node_name, self._pod_cidr, self._machine, transition_times(None),
                           self._host_ip)
        try:
            node = self._client.request("POST", "/api/v1/nodes", node)
            log.info("registered node %s", self.node_name)
        except ApiError as error:
            if error.status != 409:
                raise
            node = self._client.request("GET", f"/api/v1/nodes/{_quote(self.node_name)}")
            log.info("node %s was registered already; keeping it", self.node_name)
            if node["spec"].get("podCIDR") not in (None, self._pod_cidr):
                log.warning("node %s has podCIDR %s, not %s; pod addresses come from %s",
                            self.node_name, node["spec"]["podCIDR"], self._pod_cidr, self._pod_cidr)
        self._node_uid = node["metadata"]["uid"]
        self._patch_status(node)

    def _patch_status(self, node=None):
        """Reads the Node (unless given it) for the transition times, then
        patches the status; a Node gone is ApiError 404."""
        if node is None:
            node = self._client.request("GET", f"/api/v1/nodes/{_quote(self.node_name)}")
        status = node_status(self.node_name, self._machine, transition_times(node), self._host_ip)
        self._client.request("PATCH", f"/api/v1/nodes/{_quote(self.node_name)}/status", {"status": status},
                             "application/strategic-merge-patch+json")

    def _renew_lease(self):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{_quote(self.node_name)}"
        if self._lease is None:
            try:
                self._lease = self._client.request("GET", path)
            except ApiError as error:
                if error.status != 404:
                    raise
                self._lease = self._client.request(
                    "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    lease_object(self.node_name, self._node_uid, self._lease_duration))
                return
        lease = copy.deepcopy(self._lease)
        lease["spec"].update({"holderIdentity": self.node_name, "leaseDurationSeconds": self._lease_duration,
                              "renewTime": _now_micro()})
        try:
            self._lease = self._client.request("PUT", path, lease)
        except ApiError as error:
            if error.status in (404, 409):
                self._lease = None  # read (or create) it afresh next time, soon
            raise

    def start(self):
        self._thread.start()

    def stop(self, timeout=5.0):
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def _run(self):
        lease_interval = self._lease_duration / 4
        now = time.monotonic()
        due = {"lease": now, "status": now + NODE_STATUS_INTERVAL_SECONDS}
        failures = {"lease": 0, "status": 0}
        while True:
            wait = max(0.0, min(due.values()) - time.monotonic())
            if self._stopping.wait(wait):
                return
            for task in ("lease", "status"):
                if time.monotonic() < due[task]:
                    continue
                interval = lease_interval if task == "lease" else NODE_STATUS_INTERVAL_SECONDS
                try:
                    if task == "lease":
                        self._renew_lease()
                        if failures["lease"]:
                            # Back after an outage: the node controller may
                            # have marked the node Unknown; say Ready now.
                            due["status"] = time.monotonic()
                    else:
                        self._patch_status()
                    failures[task] = 0
                    due[task] = time.monotonic() + interval
                except ApiError as error:
                    if task == "status" and error.status == 404:
                        log.warning("node %s is gone; registering it again", self.node_name)
                        try:
                            self._register_once()
                            due[task] = time.monotonic() + interval
                            continue
                        except ApiError as again:
                            error = again
                    failures[task] += 1
                    # Sooner than the period: a lease must not lapse for one lost request.
                    retry = min(interval, 10.0, 0.5 * 2 ** failures[task])
                    log.warning("node %s: %s update failed: %s; again in %.1f s",
                                self.node_name, task, error, retry)
                    due[task] = time.monotonic() + retry


# --- projected service-account token volumes ---------------------------------------


@dataclass
class _Token:
    namespace: str
    pod_name: str
    uid: str
    account: str
    audience: str
    expiration_seconds: int
    path: Path
    mode: int
    refresh_at: float = 0.0  # time.monotonic()


def _write_atomically(path, data, mode):
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _downward_value(pod, field_path):
    meta = pod["metadata"]
    if field_path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        return meta[field_path.split(".", 1)[1]]
    if field_path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(field_path.split(".", 1)[1]) or {}
        return "\n".join(f"{key}={json.dumps(value)}" for key, value in sorted(values.items()))
    if field_path == "spec.nodeName":
        return pod["spec"].get("nodeName", "")
    if field_path == "spec.serviceAccountName":
        return pod["spec"].get("serviceAccountName", "default")
    return None


class ServiceAccountVolumes:
    """The Kubelet's volume hook: fills each projected volume holding a
    serviceAccountToken source into STATE_DIR/pods/NS/POD/volumes/VOLUME/
    (token by TokenRequest, bound to the pod; config maps and secrets by
    name; the downward API's metadata fields), and refreshes the tokens. A
    container that mounts such a volume gets its directory in
    POD_ROUTER_SERVICEACCOUNT_DIR (the one mounted at the usual path if it
    mounts several). Other volume kinds are left out."""

    def __init__(self, client, state_dir, threads=VOLUME_THREADS):
        self._client = client
        self._root = Path(state_dir) / "pods"
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="volumes")
        self._lock = threading.Lock()
        self._configmaps = {}  # (namespace, name) -> (read at, config map)
        self._tokens = {}  # uid -> list of _Token
        self._released = collections.OrderedDict()  # uids released: prepare() must not bring them back
        self._stopping = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="token-refresh", daemon=True)

    def start(self):
        self._refresher.start()

    def stop(self):
        """Removes every token this wrote: call it once the pods' processes
        have stopped."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pods = {(token.namespace, token.pod_name) for tokens in self._tokens.values() for token in tokens}
            self._tokens.clear()
        for namespace, name in pods:
            shutil.rmtree(self._root / namespace / name / "volumes", ignore_errors=True)

    def prepare(self, pod):
        return self._pool.submit(self._prepare, pod)

    def release(self, namespace, name, uid):
        with self._lock:
            self._tokens.pop(uid, None)
            self._released[uid] = True
            while len(self._released) > 10000:
                self._released.popitem(last=False)
        shutil.rmtree(self._root / namespace / name / "volumes", ignore_errors=True)

    @staticmethod
    def token_volumes(pod):
        """The pod's volumes that are projected and hold a token source."""
        return [volume for volume in pod["spec"].get("volumes") or []
                if any("serviceAccountToken" in source
                       for source in (volume.get("projected") or {}).get("sources") or [])]

    def _prepare(self, pod):
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        volumes = self.token_volumes(pod)
        if not volumes:
            return {}
        directories, tokens = {}, []
        # Private: the pods' processes run as our user, nobody else needs a token.
        root = self._root / namespace / name / "volumes"
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        for volume in volumes:
            directory = root / volume["name"]
            directory.mkdir(exist_ok=True)
            default_mode = volume["projected"].get("defaultMode", 0o644)
            for source in volume["projected"]["sources"]:
                tokens += self._fill(pod, directory, source, default_mode)
            directories[volume["name"]] = directory
        with self._lock:
            released = uid in self._released or self._stopping.is_set()
            if not released:
                self._tokens[uid] = tokens
        if released:  # the pod (or the agent) ended while we wrote
            shutil.rmtree(root, ignore_errors=True)
            return {}
        environment = {}
        for container in pod["spec"]["containers"]:
            mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") in directories]
            mounts.sort(key=lambda m: m.get("mountPath") != SERVICEACCOUNT_MOUNT_PATH)
            if mounts:
                environment[container["name"]] = {SERVICEACCOUNT_DIR_ENV: str(directories[mounts[0]["name"]])}
        return environment

    def _fill(self, pod, directory, source, default_mode):
        """Writes one projected source's files; returns its tokens."""
        namespace = pod["metadata"]["namespace"]
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            token = _Token(namespace, pod["metadata"]["name"], pod["metadata"]["uid"],
                           pod["spec"].get("serviceAccountName") or "default", spec.get("audience") or "",
                           int(spec.get("expirationSeconds") or 3600), directory / spec["path"], default_mode)
            self._request_token(token)
            return [token]
        for kind, resource in (("configMap", "configmaps"), ("secret", "secrets")):
            if kind not in source:
                continue
            spec = source[kind]
            try:
                obj = self._read(namespace, resource, spec["name"])
            except ApiError as error:
                if error.status == 404 and spec.get("optional"):
                    return []
                raise
            values = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
            if kind == "configMap":
                values.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
            else:
                values = {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
            items = spec.get("items") or [{"key": key, "path": key} for key in values]
            for item in items:
                if item["key"] not in values:
                    if spec.get("optional"):
                        continue
                    raise ApiError(0, "MissingKey", f'{kind} {spec["name"]} has no key {item["key"]}')
                _write_atomically(directory / item["path"], values[item["key"]], item.get("mode", default_mode))
            return []
        if "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                value = _downward_value(pod, (item.get("fieldRef") or {}).get("fieldPath", ""))
                if value is None:
                    log.warning("pod %s/%s: downward API item %s not supported; left out",
                                namespace, pod["metadata"]["name"], item.get("path"))
                    continue
                _write_atomically(directory / item["path"], value.encode(), item.get("mode", default_mode))
        return []

    def _request(self, method, path, body=None):
        """A request, tried again a few times over about 3 s when refused
        for now: 403 too, since the Node authorizer and NodeRestriction
        learn that a pod is bound to us a moment after our watch does."""
        for delay in (0.1, 0.2, 0.4, 0.8, 1.6, None):
            try:
                return self._client.request(method, path, body)
            except ApiError as error:
                if delay is None or (error.status not in (0, 403, 429) and error.status < 500):
                    raise
                log.debug("%s %s: %s; again in %.1f s", method, path, error, delay)
                time.sleep(delay)

    def _read(self, namespace, resource, name):
        """A config map (briefly cached) or a secret (read each time)."""
        path = f"/api/v1/namespaces/{_quote(namespace)}/{resource}/{_quote(name)}"
        if resource != "configmaps":
            return self._request("GET", path)
        now = time.monotonic()
        with self._lock:
            cached = self._configmaps.get((namespace, name))
        if cached is not None and now - cached[0] < CONFIGMAP_CACHE_SECONDS:
            return cached[1]
        obj = self._request("GET", path)
        with self._lock:
            self._configmaps = {key: entry for key, entry in self._configmaps.items()
                                if now - entry[0] < CONFIGMAP_CACHE_SECONDS}
            self._configmaps[(namespace, name)] = (now, obj)
        return obj

    def _request_token(self, token):
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [token.audience] if token.audience else None,
                "expirationSeconds": token.expiration_seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": token.pod_name, "uid": token.uid},
            },
        }
        if request["spec"]["audiences"] is None:
            del request["spec"]["audiences"]  # the API server's own audiences
        answer = self._request(
            "POST", f"/api/v1/namespaces/{_quote(token.namespace)}/serviceaccounts/{_quote(token.account)}/token",
            request)
        _write_atomically(token.path, answer["status"]["token"].encode(), token.mode)
        # As the kubelet counts: 80% of the lifetime asked for (the API may
        # grant a longer one, --service-account-extend-token-expiration),
        # or of what is left if that is less.
        lifetime = float(token.expiration_seconds)
        expires = answer["status"].get("expirationTimestamp")
        if expires:
            try:
                left = time.mktime(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
                lifetime = max(1.0, min(lifetime, left))
            except ValueError:
                pass
        token.refresh_at = time.monotonic() + TOKEN_REFRESH_FRACTION * lifetime

    def _refresh_loop(self):
        while not self._stopping.wait(1.0):
            now = time.monotonic()
            with self._lock:
                due = [(uid, token) for uid, tokens in self._tokens.items()
                       for token in tokens if token.refresh_at <= now]
            for uid, token in due:
                with self._lock:
                    if uid not in self._tokens:
                        continue  # released meanwhile
                try:
                    self._request_token(token)
                    log.debug("pod %s/%s: token %s refreshed", token.namespace, token.pod_name, token.path.name)
                except (ApiError, OSError) as error:
                    log.warning("pod %s/%s: token refresh failed: %s; again in %.0f s",
                                token.namespace, token.pod_name, error, TOKEN_RETRY_SECONDS)
                    token.refresh_at = time.monotonic() + TOKEN_RETRY_SECONDS


# --- the command ----------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="node-agent",
        description="A node for a real Kubernetes control plane: registers NAME, keeps its Lease "
                    "and status fresh, and runs the pods bound to it as local processes, each on "
                    "its own address from --pod-cidr, as kube-sim's kubelet stand-in does. A "
                    "container process whose pod mounts a service-account token finds it in the "
                    f"folder named by ${SERVICEACCOUNT_DIR_ENV} (token, ca.crt, namespace). "
                    "SIGTERM or SIGINT stops every pod process and exits; the Node stays. "
                    "See docs/kube-sim.md and docs/cluster.md.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path,
                        help="JSON kubeconfig with the node's credentials (client certificate "
                             "CN=system:node:NAME, O=system:nodes; or a token)")
    parser.add_argument("--node-name", required=True, help="the Node's name")
    parser.add_argument("--pod-cidr", required=True,
                        help="where pod IPs come from, inside 127.0.0.0/8 so that they reach "
                             "loopback; also the Node's spec.podCIDR")
    parser.add_argument("--state-dir", required=True, type=Path,
                        help="folder for pod logs and service-account token volumes")
    parser.add_argument("--image-map", type=Path,
                        help="JSON file mapping images to commands (docs/kube-sim.md); default: "
                             "only the demo images")
    parser.add_argument("--demo-runtime", choices=("shared", "process"), default="shared",
                        help="serve demo-image pods from one in-process server (shared) or a "
                             "process each (default %(default)s)")
    parser.add_argument("--start-delay", type=float, default=0.0, metavar="SECONDS",
                        help="seconds from a pod's arrival to its containers' start, for image "
                             "pull and start (default %(default)s)")
    parser.add_argument("--start-jitter", type=float, default=0.0, metavar="SECONDS",
                        help="up to this much more start delay per pod, drawn at random, as "
                             "kube-sim's --start-jitter (default %(default)s)")
    parser.add_argument("--crash-backoff", type=float, default=10.0, metavar="SECONDS",
                        help="first CrashLoopBackOff delay, doubled per restart up to 300 "
                             "(default %(default)s)")
    parser.add_argument("--lease-duration", type=int, default=40, metavar="SECONDS",
                        help="the node Lease's leaseDurationSeconds; renewed every quarter of "
                             "it (default %(default)s, a kubelet's)")
    parser.add_argument("--cpu", metavar="QUANTITY",
                        help="the Node's cpu capacity (default: this machine's cores); pods are "
                             "processes without limits, so this is what the scheduler may place")
    parser.add_argument("--memory", metavar="QUANTITY",
                        help="the Node's memory capacity, e.g. 64Gi (default: this machine's)")
    parser.add_argument("--max-pods", type=int, default=int(MAX_PODS),
                        help="the Node's pods capacity (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)
    try:
        cidr = ipaddress.ip_network(args.pod_cidr)
    except ValueError as error:
        parser.error(f"--pod-cidr: {error}")
    if not cidr.subnet_of(ipaddress.ip_network("127.0.0.0/8")) or cidr.num_addresses < 4:
        parser.error("--pod-cidr must lie inside 127.0.0.0/8 and hold at least 4 addresses")
    if args.start_delay < 0 or args.start_jitter < 0 or args.crash_backoff < 0:
        parser.error("--start-delay, --start-jitter and --crash-backoff must not be negative")
    if args.lease_duration < 4:
        parser.error("--lease-duration must be at least 4 seconds")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state_dir = begin(args.log_level, args.state_dir)
    try:
        client = ApiClient(load_kubeconfig(args.kubeconfig))
    except (KubeconfigError, OSError, ssl.SSLError) as error:
        print(f"node-agent: {error}", file=sys.stderr)
        return 2
    try:
        images = ImageMap.load(args.image_map, demo_as_process=args.demo_runtime == "process")
    except (OSError, ValueError) as error:
        print(f"node-agent: cannot load the image map: {error}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def on_signal(signum, _frame):
        if not stopping.is_set():
            log.info("signal %d: stopping the pods", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pod_cidr = str(ipaddress.ip_network(args.pod_cidr))
    heartbeat = NodeHeartbeat(client, args.node_name, pod_cidr, describe_machine(state_dir, args.cpu, args.memory, args.max_pods),
                              args.lease_duration)
    if not heartbeat.register(stopping):
        return 0  # stopped before the API server answered
    heartbeat.start()

    from .demo_pod import DemoHost  # imported here: only running pods needs it

    demo_host = DemoHost()
    demo_host.start()
    tracker = PodTracker()
    backend = ApiBackend(client, tracker)
    volumes = ServiceAccountVolumes(client, state_dir)
    volumes.start()
    kubelet = Kubelet(backend, images, demo_host, state_dir, args.start_delay, args.crash_backoff,
                      pod_cidr, start_jitter=args.start_jitter, node_name=args.node_name,
                      host_ip=HOST_IP, scheduler=False,
                      volumes=volumes)

    def deliver(notice):
        what, namespace, name, uid = notice
        if what == "created":
            kubelet.pod_created(namespace, name, uid)
        elif what == "deleted":
            kubelet.pod_deleted(namespace, name, uid)
        else:
            backend.remove_pod(namespace, name, uid)

    watcher = PodWatcher(client, args.node_name, tracker, deliver)
    kubelet.start()
    watcher.start()
    log.info("node %s running pods from %s", args.node_name, pod_cidr)
    while not stopping.wait(1.0):
        pass

    watcher.stop()
    kubelet.stop()
    volumes.stop()
    demo_host.stop()
    # What the Kubelet wrote last (a final status, a removal) goes out if
    # the API server takes it soon; the heartbeat keeps going meanwhile.
    if not backend.flush(5.0):
        log.warning("some pod writes were not made before exit")
    backend.stop()
    heartbeat.stop()
    client.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
