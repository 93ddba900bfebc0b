"""HTTP(S) front of kube-sim: authentication, discovery, OpenAPI, resource
requests, chunked watch streams, one log line per request, and main()."""

import argparse
import base64
import ipaddress
import json
import logging
import os
import select
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import api, errors, openapi, resources
from .auth import AuditLog, Authenticator, Authorizer, Request, read_tokens, write_default_tokens
from .images import ImageMap
from .process import begin
from .kubelet import Kubelet
from .store import Store
from .timeline import PodTimeline

MAX_BODY_BYTES = 3 * 1024 * 1024  # kube-apiserver's request size limit
VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-kube-sim", "gitCommit": "kube-sim",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
    "compiler": "gc", "platform": "linux/amd64",
}
UNAUTHENTICATED_PATHS = {"/healthz", "/livez", "/readyz", "/version"}
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

log = logging.getLogger("kube-sim")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A response goes out in two writes (head, then body). With Nagle's
    # algorithm on, the body waits for the ACK of the head, which a client
    # (libcurl, client-go) delays by up to 40 ms: every call on a kept-alive
    # connection would take 40 ms and one client could make 25 a second.
    disable_nagle_algorithm = True
    server_version = "kube-sim"

    # One line per request, written by _finish; silence the default log.
    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name)
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # --- plumbing ----------------------------------------------------------------

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise errors.ApiError(411, "LengthRequired", "chunked request bodies are not supported")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise errors.bad_request("invalid Content-Length") from None
        if size > MAX_BODY_BYTES:
            raise errors.ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
        return self.rfile.read(size)

    def _send(self, status, body, content_type="application/json", headers=None):
        data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._bytes = len(data)
        return status

    def _client_gone(self):
        """A watch client sends nothing after its request: readable means closed."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            self.connection.settimeout(0.0)
            try:
                return self.connection.recv(1) == b""
            finally:
                self.connection.settimeout(None)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True

    def _stream(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        sent = 0
        try:
            for event in events:
                if event is None:
                    if self._client_gone():
                        break
                    continue
                data = (json.dumps(event) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                sent += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            events.close()
        self._bytes = sent
        return 200

    def _dispatch(self, method):
        started = time.monotonic()
        self._bytes = 0
        user_name = "-"
        status = 500
        try:
            parsed = urllib.parse.urlsplit(self.path)
            path = parsed.path.rstrip("/") or "/"
            query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
            if path in UNAUTHENTICATED_PATHS and method == "GET":
                status = self._send(200, VERSION) if path == "/version" else self._send(200, b"ok", "text/plain")
                return
            body = self._read_body()
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if body and ("protobuf" in content_type or "cbor" in content_type):
                raise errors.unsupported_media_type(content_type)
            user = self.server.authenticator.authenticate(self.headers.get("Authorization"))
            user_name = user.name
            status = self._serve(user, method, path, query, body)
        except errors.ApiError as error:
            status = self._send(error.code, error.status())
        except Exception as error:  # a bug must answer 500, not kill the connection silently
            log.exception("internal error serving %s %s", method, self.path)
            status = self._send(500, errors.ApiError(500, "InternalError", f"Internal error occurred: {error}").status())
        finally:
            log.info("%s %s %d %s %dms user=%s", method, self.path, status, self._bytes,
                     int((time.monotonic() - started) * 1000), user_name)

    def _serve(self, user, method, path, query, body):
        server = self.server
        if path == "/kube-sim/faults":
            return self._faults(user, method, body)
        fault = server.faults.take(method, path)
        if fault is not None:
            # A slow answer stands for a busy apiserver or a slow etcd
            # commit: this request's thread waits, the others go on.
            time.sleep(fault.get("delay", 0))
        if fault is not None and "status" in fault:
            error = errors.ApiError(fault["status"], fault.get("reason", "InternalError"),
                                    fault.get("message", "injected by kube-sim"))
            extra = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else None
            return self._send(error.code, error.status(), headers=extra)
        if method == "GET":
            document = self._discovery(path)
            if document is not None:
                server.authorizer.check(user, Request("get", path=path))
                return self._send(200, document)
            if path.startswith("/openapi/"):
                server.authorizer.check(user, Request("get", path=path))
                document = openapi.document(path, query)
                if document is None:
                    raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
                return self._send(200, document)
        route = api.route(path)
        if route is None:
            raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource == "log" and method == "GET":
            server.authorizer.check(user, Request("get", route.rtype, route.namespace, route.name, "log"))
            data = server.kubelet.read_log(route.namespace, route.name, query.get("container", ""))
            return self._send(200, data, "text/plain")
        status, result = server.api.handle(user, method, route, query, self.headers, body)
        if hasattr(result, "__next__"):
            return self._stream(result)
        if isinstance(result, dict) and result.get("kind") == "Table":
            return self._send(status, result, "application/json;as=Table;v=v1;g=meta.k8s.io")
        return self._send(status, result)

    def _faults(self, user, method, body):
        """Test hook: the next `count` requests matching `method` and
        `path_prefix` get `status` (and `retry_after`), or are answered as
        usual after `delay` seconds, or both. Admins only."""
        if "system:masters" not in user.groups:
            raise errors.forbidden(f'User "{user.name}" cannot manage kube-sim faults')
        if method == "DELETE":
            self.server.faults.clear()
            return self._send(200, {"faults": []})
        if method != "POST":
            raise errors.method_not_allowed()
        try:
            fault = json.loads(body)
            assert isinstance(fault, dict)
            assert isinstance(fault.get("status"), int) or "delay" in fault
            assert "status" not in fault or isinstance(fault["status"], int)
            delay = fault.get("delay", 0)
            assert isinstance(delay, (int, float)) and not isinstance(delay, bool) and 0 <= delay <= 60
        except (ValueError, AssertionError):
            raise errors.bad_request(
                "a fault is {status and/or delay (0-60 s), count, method, path_prefix, retry_after}") from None
        self.server.faults.add(fault)
        return self._send(201, fault)

    def _discovery(self, path):
        address = f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        if path == "/api":
            return resources.core_versions(address)
        if path == "/apis":
            return resources.group_list()
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            return resources.resource_list("", parts[1])
        if parts[0] == "apis" and len(parts) == 2:
            return resources.group(parts[1])
        if parts[0] == "apis" and len(parts) == 3:
            return resources.resource_list(parts[1], parts[2])
        return None


class Faults:
    """Injected failures for tests of clients' retries (POST /kube-sim/faults)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._faults = []

    def add(self, fault):
        fault.setdefault("count", 1)
        with self._lock:
            self._faults.append(fault)

    def clear(self):
        with self._lock:
            self._faults.clear()

    def take(self, method, path):
        with self._lock:
            for fault in self._faults:
                if fault["count"] > 0 and fault.get("method", method) == method \
                        and path.startswith(fault.get("path_prefix", "/")):
                    fault["count"] -= 1
                    return fault
        return None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address, tls_context=None):
        super().__init__(address, Handler)
        self.tls_context = tls_context

    def get_request(self):
        connection, address = super().get_request()
        if self.tls_context is not None:
            # The handshake happens in the request's thread, on first read, so
            # one slow client cannot hold up accept().
            connection = self.tls_context.wrap_socket(
                connection, server_side=True, do_handshake_on_connect=False)
        return connection, address


def _generate_certificates(state_dir):
    """A CA and a serving certificate for 127.0.0.1 and localhost, made once."""
    ca_cert, server_cert, server_key = (state_dir / n for n in ("ca.crt", "server.crt", "server.key"))
    if ca_cert.exists() and server_cert.exists() and server_key.exists():
        return ca_cert, server_cert, server_key
    ca_key, csr, extensions = state_dir / "ca.key", state_dir / "server.csr", state_dir / "server.ext"
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "extendedKeyUsage=serverAuth\n")
    commands = [
        ["openssl", "req", "-x509", *curve, "-keyout", ca_key, "-out", ca_cert, "-days", "3650",
         "-subj", "/CN=kube-sim-ca"],
        ["openssl", "req", *curve, "-keyout", server_key, "-out", csr, "-subj", "/CN=kube-sim"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
         "-out", server_cert, "-days", "3650", "-extfile", extensions],
    ]
    for command in commands:
        subprocess.run([str(part) for part in command], check=True, capture_output=True, timeout=60)
    for path in (ca_key, server_key):
        path.chmod(0o600)
    return ca_cert, server_cert, server_key


def _write_kubeconfig(path, server_url, token, ca_cert, user, namespace="default"):
    cluster = {"server": server_url}
    if ca_cert is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_cert.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-sim", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "kube-sim", "context": {"cluster": "kube-sim", "user": user,
                                                      "namespace": namespace}}],
        "current-context": "kube-sim",
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(config, indent=2) + "\n")
    temporary.chmod(0o600)
    os.replace(temporary, path)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="kube-sim",
        description="A local Kubernetes API server and kubelet stand-in: pods run as local "
                    "processes, each on its own 127.x.y.z address. See docs/kube-sim.md.",
    )
    parser.add_argument("--state-dir", required=True, type=Path,
                        help="folder for kubeconfigs, tokens, certificates and pod logs")
    parser.add_argument("--address", default="127.0.0.1", help="listen address (default %(default)s)")
    parser.add_argument("--port", type=int, default=6443,
                        help="listen port, 0 for any free one (default %(default)s)")
    parser.add_argument("--insecure-http", action="store_true",
                        help="serve plain HTTP instead of HTTPS with a generated CA")
    parser.add_argument("--token-file", type=Path,
                        help="tokens in kube-apiserver's --token-auth-file format; default: generated")
    parser.add_argument("--service-account", action="append", default=[], metavar="NAMESPACE/NAME",
                        help="also generate a token and a kubeconfig for this service account "
                             "(repeatable; default pod-router-system/pod-router-controller)")
    parser.add_argument("--pod-cidr", default="127.1.0.0/16",
                        help="where pod IPs come from, inside 127.0.0.0/8 so that they reach "
                             "loopback; give two kube-sims on one machine different ones "
                             "(default %(default)s)")
    parser.add_argument("--image-map", type=Path, help="JSON file mapping images to commands")
    parser.add_argument("--demo-runtime", choices=("shared", "process"), default="shared",
                        help="serve demo-image pods from one in-process server (shared) or a "
                             "process each (default %(default)s)")
    parser.add_argument("--schedule-delay", type=float, default=0.0, metavar="SECONDS",
                        help="seconds a new pod waits unbound (phase Pending, no nodeName, no "
                             "conditions) before the scheduler binds it: spec.nodeName and "
                             "PodScheduled=True in one write, then the Scheduled event "
                             "(default %(default)s)")
    parser.add_argument("--schedule-jitter", type=float, default=0.0, metavar="SECONDS",
                        help="up to this many seconds more, drawn uniformly per pod, as the "
                             "scheduler's queue varies (default %(default)s)")
    parser.add_argument("--start-delay", type=float, default=1.0,
                        help="seconds from binding to container start, for image pull and "
                             "start; the containers wait as ContainerCreating meanwhile "
                             "(default %(default)s)")
    parser.add_argument("--start-jitter", type=float, default=0.0,
                        help="up to this many seconds more, drawn uniformly per pod, as image "
                             "pulls and starts vary on a node (default %(default)s)")
    parser.add_argument("--crash-backoff", type=float, default=10.0,
                        help="first CrashLoopBackOff delay in seconds, doubled per restart up to "
                             "300 (default %(default)s)")
    parser.add_argument("--watch-history", type=int, default=20000,
                        help="watch events kept for resuming; older versions get 410 Expired")
    parser.add_argument("--bookmark-interval", type=float, default=60.0,
                        help="seconds between BOOKMARK events on watches that allow them "
                             "(default %(default)s, about kube-apiserver's)")
    parser.add_argument("--audit-log", type=Path, metavar="FILE",
                        help="append one JSON line per authorization decision on a resource "
                             "to FILE: {\"user\", \"verb\", \"group\", \"resource\", "
                             "\"subresource\", \"namespace\", \"name\", \"allowed\"}; "
                             "default: none written")
    parser.add_argument("--pod-timeline", type=Path, metavar="FILE",
                        help="append one JSON line per pod lifecycle moment to FILE, flushed "
                             "at once: {\"at_ms\", \"event\", \"namespace\", \"name\", "
                             "\"uid\"}, at_ms the wall clock in milliseconds since the epoch "
                             "(float, microsecond precision) when the store took the change; "
                             "events created, scheduled, running, ready, unready, terminating, "
                             "deleted "
                             "(see docs/kube-sim.md); default: none written")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)
    accounts = []
    for entry in args.service_account or ["pod-router-system/pod-router-controller"]:
        namespace, _, name = entry.partition("/")
        if not namespace or not name:
            parser.error(f"--service-account wants NAMESPACE/NAME, got {entry!r}")
        accounts.append((namespace, name))
    args.service_accounts = accounts
    try:
        cidr = ipaddress.ip_network(args.pod_cidr)
    except ValueError as error:
        parser.error(f"--pod-cidr: {error}")
    if not cidr.subnet_of(ipaddress.ip_network("127.0.0.0/8")) or cidr.num_addresses < 4:
        parser.error("--pod-cidr must lie inside 127.0.0.0/8 and hold at least 4 addresses")
    for flag in ("schedule_delay", "schedule_jitter"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must not be negative")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    state_dir = begin(args.log_level, args.state_dir)
    for stale in ("kubeconfig",):
        (state_dir / stale).unlink(missing_ok=True)

    try:
        images = ImageMap.load(args.image_map, demo_as_process=args.demo_runtime == "process")
    except (OSError, ValueError) as error:
        print(f"kube-sim: cannot load the image map: {error}", file=sys.stderr)
        return 2

    tokens_path = args.token_file or state_dir / "tokens.csv"
    if args.token_file is None:
        write_default_tokens(tokens_path, args.service_accounts)
        tokens_path.chmod(0o600)
    try:
        users = read_tokens(tokens_path)
    except (OSError, ValueError) as error:
        print(f"kube-sim: cannot read tokens: {error}", file=sys.stderr)
        return 2

    tls_context, ca_cert = None, None
    if not args.insecure_http:
        try:
            ca_cert, server_cert, server_key = _generate_certificates(state_dir)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"kube-sim: cannot make TLS certificates with openssl: {error}", file=sys.stderr)
            return 2
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(server_cert, server_key)

    from .demo_pod import DemoHost  # imported here: only the kubelet needs it

    # The files kube-sim appends to as it runs (--pod-timeline, --audit-log).
    timeline = audit = None

    def close_records():
        for record in (timeline, audit):
            if record is not None:
                record.close()

    try:
        if args.pod_timeline is not None:
            timeline = PodTimeline(args.pod_timeline)
        if args.audit_log is not None:
            audit = AuditLog(args.audit_log)
    except OSError as error:
        print(f"kube-sim: cannot open {error.filename}: {error.strerror}", file=sys.stderr)
        close_records()
        return 2
    store = Store(history_limit=args.watch_history,
                  observer=None if timeline is None else timeline.observe)
    for namespace in DEFAULT_NAMESPACES:
        store.create(resources.namespaces(), "", {"metadata": {"name": namespace},
                                                  "spec": {"finalizers": ["kubernetes"]},
                                                  "status": {"phase": "Active"}})
    demo_host = DemoHost()
    demo_host.start()
    kubelet = Kubelet(store, images, demo_host, state_dir, args.start_delay, args.crash_backoff,
                      args.pod_cidr, start_jitter=args.start_jitter,
                      schedule_delay=args.schedule_delay, schedule_jitter=args.schedule_jitter)
    try:
        server = Server((args.address, args.port), tls_context)
    except OSError as error:
        print(f"kube-sim: cannot listen on {args.address}:{args.port}: {error}", file=sys.stderr)
        demo_host.stop()
        close_records()
        return 1
    server.authenticator = Authenticator(users)
    server.faults = Faults()
    server.authorizer = Authorizer(store, audit)
    server.kubelet = kubelet
    server.api = api.Api(store, server.authorizer, kubelet, args.bookmark_interval)
    kubelet.start()

    host, port = server.server_address[:2]
    url = f"{'http' if args.insecure_http else 'https'}://{host}:{port}"
    token_of = {user.name: token for token, user in users.items()}
    admin = next((t for t, u in users.items() if "system:masters" in u.groups), None)
    for namespace, name in args.service_accounts:
        account = f"system:serviceaccount:{namespace}:{name}"
        if account in token_of:
            # The account's own namespace, as in a pod (the mounted
            # serviceaccount/namespace file).
            _write_kubeconfig(state_dir / f"kubeconfig.{namespace}.{name}", url, token_of[account],
                              ca_cert, account, namespace)
    if admin is not None:
        _write_kubeconfig(state_dir / "kubeconfig", url, admin, ca_cert, "kube-sim-admin")
    log.info("serving on %s; admin kubeconfig %s", url, state_dir / "kubeconfig")

    stopping = threading.Event()

    def on_signal(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            log.info("signal %d: stopping pods and the server", signum)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        kubelet.stop()
        demo_host.stop()
        server.server_close()
        store.wake_watchers()
        close_records()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
