"""The "httpd" demo image: a tiny web server that kube-sim runs as pods.

A pod of this image answers every GET with "It works!" and its own name, so
a test that goes through pod-router can tell which pod served it, echoes
WebSocket messages, so tests of long-lived connections have something to
hold open, and answers /headers with the request headers it received (a
JSON object), so tests can see what a router passed on.

Why it looks the way it does:

* One pod per process would cost about 10 MB each; 1,000 pods on a 2-core
  machine would not fit. DemoHost therefore serves many pods from one
  asyncio loop, with one listening socket per pod address, the way a real
  node has one network namespace per pod.
* The HTTP side is an asyncio.Protocol rather than asyncio streams because it
  is benchmarked with wrk; streams cost a task and several awaits per request.
* Only what the tests and benchmarks need of HTTP/1.1 and RFC 6455 is here,
  but what is here is strict enough that a misbehaving client (or router)
  gets an error status instead of a hang.

Standalone mode serves one pod in its own process, for when a pod must die
on its own (kill -9 of a single "container"):

    python3 -m kubesim.demo_pod --name web-0 --ip 127.0.1.5 --port 80
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import html
import json
import re
import signal
import socket
import sys
import threading
import time

try:
    import resource
except ImportError:  # not POSIX; the open-file limit is then not ours to raise
    resource = None


MAX_REQUEST_HEAD_BYTES = 16 * 1024
IDLE_KEEPALIVE_TIMEOUT_SECONDS = 60.0
# How long a connection we are closing because of a client error may keep
# sending before we stop reading and reset it.
LINGER_SECONDS = 5.0
MAX_WEBSOCKET_MESSAGE_BYTES = 1024 * 1024
# nginx's default; a burst of connections from wrk must not be refused.
LISTEN_BACKLOG = 511
CONTROL_CALL_TIMEOUT_SECONDS = 5.0

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SERVER_HEADER = b"Server: kubesim-demo-pod\r\n"
_HEALTH_BODY = b"ok\n"

_REQUEST_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/1\.([0-9])")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    411: b"Length Required",
    431: b"Request Header Fields Too Large",
}

_OPCODE_CONTINUATION = 0x0
_OPCODE_TEXT = 0x1
_OPCODE_BINARY = 0x2
_OPCODE_CLOSE = 0x8
_OPCODE_PING = 0x9
_OPCODE_PONG = 0xA

_CLOSE_PROTOCOL_ERROR = 1002
_CLOSE_INVALID_PAYLOAD = 1007
_CLOSE_MESSAGE_TOO_BIG = 1009

_MODE_HTTP = 0
_MODE_WEBSOCKET = 1
# We sent our last bytes and shut down our side; whatever the peer still
# sends is read and thrown away so that closing does not turn into a reset
# that could destroy the error response before the peer reads it.
_MODE_DRAINING = 2
_MODE_CLOSED = 3


_date_cache = (0, b"")


def _http_date() -> bytes:
    # Formatting a date per response is measurable under wrk; it only
    # changes once a second.
    global _date_cache
    now = int(time.time())
    cached_second, cached_value = _date_cache
    if now != cached_second:
        cached_value = time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode("ascii")
        _date_cache = (now, cached_value)
    return cached_value


def _comma_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",")}


def _path_of(target: bytes) -> bytes:
    if not target.startswith(b"/"):
        # Absolute form (a client talking to us as if we were a proxy).
        scheme_end = target.find(b"://")
        if scheme_end >= 0:
            path_start = target.find(b"/", scheme_end + 3)
            target = target[path_start:] if path_start >= 0 else b"/"
    return target.split(b"?", 1)[0]


def _websocket_accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())


def _is_valid_websocket_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _is_valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 must never be sent on the wire; the
    # rest below 3000 is reserved for future registration.
    return (1000 <= code <= 1003 or 1007 <= code <= 1014
            or 3000 <= code <= 4999)


def _unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    # XOR as one big integer: a per-byte Python loop would take about a
    # second for a 1 MiB message.
    size = len(payload)
    if not size:
        return b""
    key_stream = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big")
            ^ int.from_bytes(key_stream, "big")).to_bytes(size, "big")


def _encode_frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
    return header + payload


def _raise_open_file_limit() -> None:
    # Each pod is a listening socket plus its connections; 1,000 pods do not
    # fit under the usual soft limit of 1,024 descriptors.
    if resource is None:
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        pass  # best effort: fewer pods fit, nothing else breaks


def _bind_listener(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A restarted pod must get its address back while the previous
        # incarnation's connections sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ip, port))
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


class _PodSite:
    """One pod's listener, its open connections and its canned responses."""

    def __init__(self, name: str, ip: str, port: int):
        self.name = name
        self.ip = ip
        self.port = port
        self.server: asyncio.base_events.Server | None = None
        self.connections: set[_PodConnection] = set()
        self.closed = False

        self.pod_name_header = b"X-Pod-Name: " + name.encode("ascii") + b"\r\n"
        self.page_body = (
            "<html><body><h1>It works!</h1><p>pod: %s</p></body></html>\n"
            % html.escape(name)).encode("utf-8")
        self.page_headers = (
            b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Length: %d\r\n" % len(self.page_body)
            + self.pod_name_header)
        self.health_headers = (
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n" % len(_HEALTH_BODY)
            + self.pod_name_header)

    def close(self) -> None:
        """Drop the listener and every connection, as a dying container does."""
        self.closed = True
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.transport.abort()


class _PodConnection(asyncio.Protocol):
    """One client connection: HTTP/1.1 until it upgrades to WebSocket."""

    def __init__(self, site: _PodSite, loop: asyncio.AbstractEventLoop,
                 idle_timeout_seconds: float):
        self.site = site
        self.loop = loop
        self.idle_timeout_seconds = idle_timeout_seconds
        self.transport: asyncio.Transport | None = None
        self.mode = _MODE_HTTP
        self.buffer = bytearray()
        # Responses to pipelined requests are collected and written at once.
        self.output: list[bytes] = []
        self.last_activity = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.body_bytes_remaining = 0
        self.request_awaiting_body: tuple | None = None
        self.message_opcode = 0  # of the fragmented message in progress
        self.message_parts: list[bytes] = []
        self.message_size = 0

    # -- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.site.connections.add(self)
        self.last_activity = self.loop.time()
        self.idle_timer = self.loop.call_later(
            self.idle_timeout_seconds, self._on_idle_timer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.mode = _MODE_CLOSED
        self.site.connections.discard(self)
        self._cancel_timers()
        self.buffer = bytearray()
        self.output = []
        self.message_parts = []

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.mode == _MODE_HTTP:
            self.buffer += data
            self._process_http()
        elif self.mode == _MODE_WEBSOCKET:
            self.buffer += data
            self._process_websocket()
        # Draining or closed: the bytes are discarded on purpose.
        self._flush()

    def eof_received(self) -> bool:
        # Every complete request has been answered synchronously by now, so
        # a peer that stops sending leaves nothing for us to do.
        return False

    def pause_writing(self) -> None:
        # A client that pipelines or sends WebSocket messages without
        # reading the answers would otherwise grow our write buffer forever.
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    # -- connection lifetime ------------------------------------------------

    def _cancel_timers(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None

    def _on_idle_timer(self) -> None:
        # One timer per connection, re-armed lazily: re-arming it on every
        # request would cost a heap operation per request under wrk.
        self.idle_timer = None
        if self.mode != _MODE_HTTP:
            return
        idle_for = self.loop.time() - self.last_activity
        if idle_for >= self.idle_timeout_seconds:
            self.mode = _MODE_CLOSED
            self.transport.close()
        else:
            self.idle_timer = self.loop.call_later(
                self.idle_timeout_seconds - idle_for, self._on_idle_timer)

    def _flush(self) -> None:
        if self.output:
            output = self.output
            self.output = []
            self.transport.write(
                output[0] if len(output) == 1 else b"".join(output))

    def _close_after_flush(self) -> None:
        self.mode = _MODE_CLOSED
        self._flush()
        self._cancel_timers()
        self.transport.close()
        if self.transport.get_write_buffer_size():
            # close() waits for the buffer to drain; a peer that never reads
            # would keep the connection forever.
            self.linger_timer = self.loop.call_later(
                LINGER_SECONDS, self.transport.abort)

    def _drain_and_close(self) -> None:
        """Send what is queued, then half-close and wait for the peer's EOF."""
        self.mode = _MODE_DRAINING
        self._flush()
        self._cancel_timers()
        self.buffer = bytearray()
        self.message_parts = []
        self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.linger_timer = self.loop.call_later(
                LINGER_SECONDS, self.transport.abort)
        else:
            self.transport.close()

    # -- HTTP ---------------------------------------------------------------

    def _process_http(self) -> None:
        buffer = self.buffer
        while self.mode == _MODE_HTTP:
            if self.body_bytes_remaining:
                if not buffer:
                    return
                taken = min(len(buffer), self.body_bytes_remaining)
                del buffer[:taken]
                self.body_bytes_remaining -= taken
                if self.body_bytes_remaining:
                    return
                request, self.request_awaiting_body = (
                    self.request_awaiting_body, None)
                self._answer(*request)
                continue
            # RFC 9112 2.2: tolerate empty lines before a request line.
            while buffer.startswith(b"\r\n"):
                del buffer[:2]
            if not buffer:
                return
            head_end = buffer.find(b"\r\n\r\n", 0, MAX_REQUEST_HEAD_BYTES + 4)
            if head_end < 0:
                if len(buffer) >= MAX_REQUEST_HEAD_BYTES + 4:
                    self._reject(431)
                return
            head = bytes(buffer[:head_end])
            del buffer[:head_end + 4]
            self._handle_request_head(head)

    def _handle_request_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        request_line = _REQUEST_LINE.fullmatch(lines[0])
        if request_line is None:
            self._reject(400)
            return
        method, target, http_minor = request_line.groups()

        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            # No whitespace before the colon and no obsolete line folding:
            # both are request-smuggling vectors (RFC 9112 5.1, 5.2).
            if not colon or _HEADER_NAME.fullmatch(name) is None:
                self._reject(400)
                return
            name = name.lower()
            value = value.strip(b" \t")
            if name in headers:
                headers[name] += b", " + value
            else:
                headers[name] = value

        connection_tokens = _comma_tokens(headers.get(b"connection", b""))
        if http_minor == b"0":
            keep_alive = b"keep-alive" in connection_tokens
        else:
            keep_alive = b"close" not in connection_tokens

        upgrade = headers.get(b"upgrade")
        if upgrade is not None and b"websocket" in _comma_tokens(upgrade):
            self._upgrade_to_websocket(
                method, http_minor, headers, connection_tokens)
            return

        # We never look at request bodies; a chunked one would need a
        # decoder only to find where it ends, and 411 is allowed for it.
        if b"transfer-encoding" in headers:
            self._reject(411)
            return
        content_length = headers.get(b"content-length")
        body_size = 0
        if content_length is not None:
            if not (content_length.isdigit() and content_length.isascii()):
                self._reject(400)
                return
            body_size = int(content_length)

        request = (method, target, keep_alive, http_minor, headers)
        if body_size:
            # curl waits a second for this before sending a large body.
            if (http_minor == b"1"
                    and headers.get(b"expect", b"").lower() == b"100-continue"):
                self.output.append(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.body_bytes_remaining = body_size
            self.request_awaiting_body = request
        else:
            self._answer(*request)

    def _answer(self, method: bytes, target: bytes, keep_alive: bool,
                http_minor: bytes, request_headers: dict[bytes, bytes]) -> None:
        site = self.site
        path = _path_of(target)
        if path == b"/healthz":
            headers, body = site.health_headers, _HEALTH_BODY
        elif path == b"/headers":
            # Names in lower case; repeated headers joined with ", ".
            body = json.dumps({name.decode("latin-1"): value.decode("latin-1")
                               for name, value in request_headers.items()}).encode("utf-8")
            headers = (b"Content-Type: application/json\r\n"
                       b"Content-Length: %d\r\n" % len(body) + site.pod_name_header)
        else:
            headers, body = site.page_headers, site.page_body
        if not keep_alive:
            connection_header = b"Connection: close\r\n"
        elif http_minor == b"0":
            connection_header = b"Connection: keep-alive\r\n"
        else:
            connection_header = b""
        self.output.append(b"".join((
            b"HTTP/1.1 200 OK\r\n", _SERVER_HEADER,
            b"Date: ", _http_date(), b"\r\n",
            headers, connection_header, b"\r\n",
            b"" if method == b"HEAD" else body)))
        if not keep_alive:
            self._close_after_flush()

    def _reject(self, status: int, extra_headers: bytes = b"") -> None:
        reason = _REASONS[status]
        body = b"%d %s\n" % (status, reason)
        self.output.append(b"".join((
            b"HTTP/1.1 %d %s\r\n" % (status, reason), _SERVER_HEADER,
            b"Date: ", _http_date(), b"\r\n",
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            self.site.pod_name_header, extra_headers,
            b"Connection: close\r\n\r\n", body)))
        # The rest of the stream cannot be trusted to be framed correctly.
        self._drain_and_close()

    # -- WebSocket ----------------------------------------------------------

    def _upgrade_to_websocket(self, method: bytes, http_minor: bytes,
                              headers: dict[bytes, bytes],
                              connection_tokens: set[bytes]) -> None:
        key = headers.get(b"sec-websocket-key", b"")
        if (method != b"GET" or http_minor != b"1"
                or b"upgrade" not in connection_tokens
                or headers.get(b"sec-websocket-version") != b"13"
                or not _is_valid_websocket_key(key)
                or b"transfer-encoding" in headers
                or headers.get(b"content-length", b"0") != b"0"):
            # Naming the version we speak lets a client retry (RFC 6455 4.4).
            self._reject(400, b"Sec-WebSocket-Version: 13\r\n")
            return
        self.output.append(b"".join((
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"Upgrade: websocket\r\n",
            b"Connection: Upgrade\r\n",
            b"Sec-WebSocket-Accept: ", _websocket_accept(key), b"\r\n",
            _SERVER_HEADER, self.site.pod_name_header, b"\r\n")))
        self.mode = _MODE_WEBSOCKET
        # A WebSocket here is long-lived on purpose: the tests use it to see
        # what the router does to connections that outlive a pod change.
        self._cancel_timers()
        if self.buffer:
            self._process_websocket()

    def _process_websocket(self) -> None:
        buffer = self.buffer
        while self.mode == _MODE_WEBSOCKET:
            available = len(buffer)
            if available < 2:
                return
            first, second = buffer[0], buffer[1]
            # No extension was negotiated, so RSV bits must be clear; and
            # client frames must be masked (RFC 6455 5.1).
            if first & 0x70 or not second & 0x80:
                self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                return
            final = bool(first & 0x80)
            opcode = first & 0x0F
            size = second & 0x7F
            header_size = 2
            if size == 126:
                if available < 4:
                    return
                size = int.from_bytes(buffer[2:4], "big")
                header_size = 4
            elif size == 127:
                if available < 10:
                    return
                size = int.from_bytes(buffer[2:10], "big")
                header_size = 10
                if size >> 63:
                    self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                    return

            # Checked before the payload arrives so that an oversized
            # message is refused without buffering it.
            if opcode >= 0x8:
                if (opcode not in (_OPCODE_CLOSE, _OPCODE_PING, _OPCODE_PONG)
                        or not final or size > 125):
                    self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                    return
            elif opcode == _OPCODE_CONTINUATION:
                if not self.message_opcode:
                    self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                    return
                if self.message_size + size > MAX_WEBSOCKET_MESSAGE_BYTES:
                    self._fail_websocket(_CLOSE_MESSAGE_TOO_BIG)
                    return
            elif opcode in (_OPCODE_TEXT, _OPCODE_BINARY):
                if self.message_opcode:
                    self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                    return
                if size > MAX_WEBSOCKET_MESSAGE_BYTES:
                    self._fail_websocket(_CLOSE_MESSAGE_TOO_BIG)
                    return
            else:
                self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                return

            frame_end = header_size + 4 + size
            if available < frame_end:
                return
            mask = bytes(buffer[header_size:header_size + 4])
            payload = _unmask(buffer[header_size + 4:frame_end], mask)
            del buffer[:frame_end]

            if opcode >= 0x8:
                self._on_control_frame(opcode, payload)
            elif final and opcode:
                self._on_message(opcode, payload)
            else:
                if opcode:
                    self.message_opcode = opcode
                self.message_parts.append(payload)
                self.message_size += size
                if final:
                    message_opcode = self.message_opcode
                    message = b"".join(self.message_parts)
                    self.message_opcode = 0
                    self.message_parts = []
                    self.message_size = 0
                    self._on_message(message_opcode, message)

    def _on_message(self, opcode: int, payload: bytes) -> None:
        if opcode == _OPCODE_TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail_websocket(_CLOSE_INVALID_PAYLOAD)
                return
        self.output.append(_encode_frame(opcode, payload))

    def _on_control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == _OPCODE_PING:
            self.output.append(_encode_frame(_OPCODE_PONG, payload))
        elif opcode == _OPCODE_CLOSE:
            if len(payload) == 1:
                self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                return
            if payload:
                if not _is_valid_close_code(int.from_bytes(payload[:2], "big")):
                    self._fail_websocket(_CLOSE_PROTOCOL_ERROR)
                    return
                try:
                    payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    self._fail_websocket(_CLOSE_INVALID_PAYLOAD)
                    return
            # Echo the peer's status code; the peer has stopped sending, so
            # the server may close the TCP connection at once (RFC 6455 7.1.1).
            self.output.append(_encode_frame(_OPCODE_CLOSE, payload[:2]))
            self._close_after_flush()
        # An unsolicited pong is allowed and needs no answer.

    def _fail_websocket(self, close_code: int) -> None:
        self.output.append(
            _encode_frame(_OPCODE_CLOSE, close_code.to_bytes(2, "big")))
        self._drain_and_close()


class DemoHost:
    """Serves any number of demo pods from one event loop in a daemon thread.

    The kubelet stand-in calls add_pod/remove_pod from its own threads; every
    socket operation happens on the loop thread, and the calls wait for it so
    that a bind error reaches the caller as an OSError.
    """

    def __init__(self, idle_timeout_seconds: float = IDLE_KEEPALIVE_TIMEOUT_SECONDS):
        self.idle_timeout_seconds = idle_timeout_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Written on the loop thread, read by pods() from any thread.
        self._pods_lock = threading.Lock()
        self._pods: dict[str, _PodSite] = {}

    def __enter__(self) -> DemoHost:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("DemoHost is already started")
        _raise_open_file_limit()
        loop = asyncio.new_event_loop()
        running = threading.Event()

        def run_loop() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(running.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(
            target=run_loop, name="kubesim-demo-pods", daemon=True)
        self._thread.start()
        if not running.wait(CONTROL_CALL_TIMEOUT_SECONDS):
            raise RuntimeError("DemoHost event loop did not start")

    def stop(self, timeout: float = CONTROL_CALL_TIMEOUT_SECONDS) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if thread.is_alive():
            try:
                self._call_on_loop(self._close_all_pods(), timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                pass  # the thread is a daemon; stopping must not hang
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # loop already closed
            thread.join(max(0.0, deadline - time.monotonic()))
        self._loop = None
        self._thread = None

    def add_pod(self, name: str, ip: str, port: int, key: str | None = None) -> None:
        """Serves pod `name` on (ip, port). `key` (default: name) is what
        remove_pod() takes; the kubelet passes namespace/pod/container, since
        pod names repeat across namespaces."""
        if not (isinstance(name, str) and name and name.isascii()
                and name.isprintable()):
            raise ValueError("pod name must be non-empty printable ASCII: %r"
                             % (name,))
        if not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError("port must be in 1..65535: %r" % (port,))
        self._call_on_loop(self._open_pod(key or name, name, ip, port))

    def remove_pod(self, name: str) -> None:
        if self._loop is None:
            return
        self._call_on_loop(self._close_pod(name))

    def pods(self) -> list[str]:
        with self._pods_lock:
            return list(self._pods)

    # -- loop side ----------------------------------------------------------

    def _call_on_loop(self, coroutine,
                      timeout: float = CONTROL_CALL_TIMEOUT_SECONDS):
        loop = self._loop
        if loop is None or loop.is_closed():
            coroutine.close()
            raise RuntimeError("DemoHost is not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _open_pod(self, key: str, name: str, ip: str, port: int) -> None:
        site = _PodSite(name, ip, port)
        with self._pods_lock:
            if key in self._pods:
                raise ValueError("pod %r is already served" % key)
            # Claimed before the await below so that a concurrent add_pod
            # of the same key fails instead of binding twice.
            self._pods[key] = site
        try:
            listener = _bind_listener(ip, port)
            try:
                site.server = await self._loop.create_server(
                    lambda: _PodConnection(
                        site, self._loop, self.idle_timeout_seconds),
                    sock=listener)
            except BaseException:
                listener.close()
                raise
        except BaseException:
            with self._pods_lock:
                if self._pods.get(key) is site:
                    del self._pods[key]
            raise
        if site.closed:
            # remove_pod ran while create_server was yielding.
            site.server.close()

    async def _close_pod(self, name: str) -> None:
        with self._pods_lock:
            site = self._pods.pop(name, None)
        if site is not None:
            site.close()
            # Let the aborted transports run connection_lost (which closes
            # their sockets) before remove_pod returns to the caller.
            await asyncio.sleep(0)

    async def _close_all_pods(self) -> None:
        with self._pods_lock:
            sites = list(self._pods.values())
            self._pods.clear()
        for site in sites:
            site.close()
        await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m kubesim.demo_pod",
        description="Serve one demo 'httpd' pod: 'It works!' plus the pod "
                    "name over HTTP/1.1, and a WebSocket echo. Runs until "
                    "SIGTERM or SIGINT.")
    parser.add_argument("--name", required=True,
                        help="pod name, sent in the page and X-Pod-Name")
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=80,
                        help="container port to listen on (default: %(default)s)")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def request_stop(signum, frame) -> None:
        stop_requested.set()

    # Installed before binding so that a SIGTERM sent as soon as the pod
    # answers still ends in an orderly exit 0.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    host = DemoHost()
    host.start()
    try:
        host.add_pod(args.name, args.ip, args.port)
    except (OSError, ValueError) as error:
        print("demo_pod: cannot serve pod %s on %s:%d: %s"
              % (args.name, args.ip, args.port, error), file=sys.stderr)
        host.stop()
        return 1
    print("demo_pod: pod %s listening on %s:%d"
          % (args.name, args.ip, args.port), file=sys.stderr, flush=True)
    # A timed wait keeps the main thread returning to the interpreter, where
    # signal handlers run.
    while not stop_requested.wait(1.0):
        pass
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
