"""Tests of the demo "httpd" pod server over real loopback sockets.

Every test binds its own 127.x addresses, so tests never share a listener,
and ports are found free by binding port 0 first (add_pod takes a fixed
port, as a container port is fixed).
"""

import base64
import errno
import hashlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

_KUBE_SIM_DIR = os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "kube-sim"))
if _KUBE_SIM_DIR not in sys.path:
    sys.path.insert(0, _KUBE_SIM_DIR)

from kubesim import demo_pod  # noqa: E402
from kubesim.demo_pod import DemoHost  # noqa: E402

TIMEOUT = 5.0
RFC_SAMPLE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_SAMPLE_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

_next_host_number = itertools.count(1)


def fresh_ip():
    """A loopback address no other test in this run uses."""
    number = next(_next_host_number)
    return "127.3.%d.%d" % (number // 250, number % 250 + 1)


def free_port(*ips):
    """A port that is free on every one of ips right now."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind((ips[0], 0))
        port = probe.getsockname()[1]
        probe.close()
        if all(_is_free(ip, port) for ip in ips[1:]):
            return port
    raise RuntimeError("no common free port")


def _is_free(ip, port):
    probe = socket.socket()
    try:
        probe.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def page_body(name):
    return ("<html><body><h1>It works!</h1><p>pod: %s</p></body></html>\n"
            % name).encode()


@pytest.fixture
def host():
    demo_host = DemoHost()
    demo_host.start()
    yield demo_host
    demo_host.stop()


@pytest.fixture
def pod(host):
    """One pod named "web-0"; returns (ip, port)."""
    ip = fresh_ip()
    port = free_port(ip)
    host.add_pod("web-0", ip, port)
    return ip, port


@pytest.fixture
def open_http():
    """Makes http.client connections that are closed when the test ends."""
    clients = []

    def open_client(address):
        client = http.client.HTTPConnection(*address, timeout=TIMEOUT)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def connect(address):
    return socket.create_connection(address, timeout=TIMEOUT)


def read_response(reader, head=False):
    """One HTTP response from a buffered socket file: (status, headers, body).

    Header names are lower-cased. Our own reader, because http.client cannot
    read several pipelined responses from one stream.
    """
    status_line = reader.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = reader.readline()
        assert line, "connection closed inside the headers"
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b"" if head else reader.read(int(headers.get("content-length", "0")))
    return status, headers, body


def assert_closed_by_server(sock):
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


# -- HTTP ---------------------------------------------------------------------

def test_two_pods_on_their_own_addresses_answer_with_their_own_names(host, open_http):
    ip_a, ip_b = fresh_ip(), fresh_ip()
    port = free_port(ip_a, ip_b)  # same container port, as for real pods
    host.add_pod("web-a", ip_a, port)
    host.add_pod("web-b", ip_b, port)
    assert sorted(host.pods()) == ["web-a", "web-b"]
    for ip, name in ((ip_a, "web-a"), (ip_b, "web-b")):
        client = open_http((ip, port))
        client.request("GET", "/some/path?x=1")
        response = client.getresponse()
        assert response.status == 200
        assert response.getheader("X-Pod-Name") == name
        assert response.getheader("Content-Type") == "text/html; charset=utf-8"
        assert response.read() == page_body(name)


def test_healthz(pod, open_http):
    client = open_http(pod)
    client.request("GET", "/healthz")
    response = client.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/plain")
    assert response.read() == b"ok\n"


def test_head_has_headers_only(pod, open_http):
    client = open_http(pod)
    client.request("HEAD", "/")
    response = client.getresponse()
    assert response.status == 200
    assert response.getheader("X-Pod-Name") == "web-0"
    assert int(response.getheader("Content-Length")) == len(page_body("web-0"))
    assert response.read() == b""
    # Nothing stray after the headers: the next request still parses.
    client.request("GET", "/")
    assert client.getresponse().read() == page_body("web-0")


def test_keep_alive_serves_two_requests_on_one_connection(pod, open_http):
    client = open_http(pod)
    client.request("GET", "/first")
    first = client.getresponse()
    assert first.read() == page_body("web-0")
    assert not first.will_close
    sock = client.sock
    client.request("GET", "/second")
    second = client.getresponse()
    assert second.read() == page_body("web-0")
    assert client.sock is sock


def test_pipelined_requests_are_answered_in_order(pod):
    with connect(pod) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reader = sock.makefile("rb")
        assert read_response(reader)[2] == page_body("web-0")
        assert read_response(reader)[2] == b"ok\n"
        status, headers, body = read_response(reader, head=True)
        assert body == b""
        assert status == 200 and "connection" not in headers
        status, headers, body = read_response(reader)
        assert body == b"ok\n" and headers["connection"] == "close"
        assert reader.read() == b""


def test_connection_close_is_honoured(pod):
    with connect(pod) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        reader = sock.makefile("rb")
        status, headers, body = read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert body == page_body("web-0")
        assert reader.read() == b""


def test_http_1_0_closes_unless_keep_alive_is_asked(pod):
    with connect(pod) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reader = sock.makefile("rb")
        assert read_response(reader)[0] == 200
        assert reader.read() == b""
    with connect(pod) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reader = sock.makefile("rb")
        status, headers, _ = read_response(reader)
        assert headers["connection"] == "keep-alive"
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert read_response(reader)[2] == b"ok\n"
        assert reader.read() == b""


@pytest.mark.parametrize("garbage", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
])
def test_malformed_request_gets_400_and_close(pod, garbage):
    with connect(pod) as sock:
        sock.sendall(garbage)
        reader = sock.makefile("rb")
        status, headers, _ = read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert reader.read() == b""


@pytest.mark.parametrize("terminated", [True, False])
def test_headers_over_16_kib_get_431_and_close(pod, terminated):
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000
    if terminated:
        request += b"\r\n\r\n"
    with connect(pod) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        status, headers, _ = read_response(reader)
        assert status == 431 and headers["connection"] == "close"
        sock.shutdown(socket.SHUT_WR)
        assert reader.read() == b""


def test_headers_just_under_the_limit_are_accepted(pod):
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: "
    request += b"a" * (16 * 1024 - len(request)) + b"\r\n\r\n"
    assert len(request) == 16 * 1024 + 4
    with connect(pod) as sock:
        sock.sendall(request)
        assert read_response(sock.makefile("rb"))[0] == 200


def test_post_body_is_read_and_discarded(pod, open_http):
    client = open_http(pod)
    client.request("POST", "/upload", body=b"x" * 300_000,
                   headers={"Content-Type": "application/octet-stream"})
    response = client.getresponse()
    assert response.status == 200
    assert response.read() == page_body("web-0")
    # The body did not leak into the next request's parse.
    client.request("PUT", "/healthz", body=b"{}")
    assert client.getresponse().read() == b"ok\n"


def test_expect_100_continue_is_answered(pod):
    with connect(pod) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(b"abc")
        assert read_response(reader)[0] == 200


def test_chunked_request_body_gets_411(pod):
    with connect(pod) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        reader = sock.makefile("rb")
        assert read_response(reader)[0] == 411
        assert reader.read() == b""


def test_idle_keep_alive_connection_is_closed():
    with DemoHost(idle_timeout_seconds=0.3) as host:
        ip = fresh_ip()
        port = free_port(ip)
        host.add_pod("idle", ip, port)
        with connect((ip, port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            read_response(sock.makefile("rb"))
            started = time.monotonic()
            assert_closed_by_server(sock)
            assert 0.2 < time.monotonic() - started < 3


# -- WebSocket ----------------------------------------------------------------

def upgrade_request(key=RFC_SAMPLE_KEY, version=b"13", extra=b""):
    return (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
            b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")


def client_frame(opcode, payload, final=True, mask=b"\x37\xfa\x21\x3d",
                 length_form=None):
    """A masked client frame; length_form forces 7, 16 or 64-bit lengths."""
    size = len(payload)
    if length_form is None:
        length_form = 7 if size < 126 else 16 if size < 65536 else 64
    header = bytes([(0x80 if final else 0) | opcode])
    if length_form == 7:
        header += bytes([0x80 | size])
    elif length_form == 16:
        header += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def read_frame(reader):
    """(final, opcode, payload, length_form) of one server frame."""
    first, second = reader.read(2)
    assert not second & 0x80, "server frames must not be masked"
    size = second & 0x7F
    length_form = 7
    if size == 126:
        size = int.from_bytes(reader.read(2), "big")
        length_form = 16
    elif size == 127:
        size = int.from_bytes(reader.read(8), "big")
        length_form = 64
    payload = reader.read(size)
    assert len(payload) == size
    return bool(first & 0x80), first & 0x0F, payload, length_form


@pytest.fixture
def websocket(pod):
    """An upgraded connection to pod web-0: (socket, buffered reader)."""
    sock = connect(pod)
    sock.sendall(upgrade_request())
    reader = sock.makefile("rb")
    status, headers, _ = read_response(reader)
    assert status == 101
    yield sock, reader
    sock.close()


def test_websocket_handshake_returns_the_rfc_accept_value(pod):
    with connect(pod) as sock:
        sock.sendall(upgrade_request())
        reader = sock.makefile("rb")
        status, headers, body = read_response(reader)
    assert status == 101
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"].encode() == RFC_SAMPLE_ACCEPT
    assert headers["x-pod-name"] == "web-0"
    assert body == b""


def test_websocket_accept_matches_any_key(pod):
    key = base64.b64encode(os.urandom(16))
    expected = base64.b64encode(hashlib.sha1(
        key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    with connect(pod) as sock:
        sock.sendall(upgrade_request(key=key))
        _, headers, _ = read_response(sock.makefile("rb"))
    assert headers["sec-websocket-accept"].encode() == expected


@pytest.mark.parametrize("request_bytes", [
    upgrade_request(version=b"12"),
    upgrade_request(key=b"too-short"),
    upgrade_request().replace(b"GET", b"POST"),
    upgrade_request().replace(b"keep-alive, Upgrade", b"keep-alive"),
    upgrade_request().replace(b"Sec-WebSocket-Key: " + RFC_SAMPLE_KEY + b"\r\n", b""),
])
def test_bad_upgrade_request_gets_400(pod, request_bytes):
    with connect(pod) as sock:
        sock.sendall(request_bytes)
        reader = sock.makefile("rb")
        assert read_response(reader)[0] == 400
        assert reader.read() == b""


def test_websocket_echoes_text_and_binary(websocket):
    sock, reader = websocket
    sock.sendall(client_frame(0x1, "héllo, pod".encode()))
    assert read_frame(reader) == (True, 0x1, "héllo, pod".encode(), 7)
    binary = bytes(range(256))
    sock.sendall(client_frame(0x2, binary))
    assert read_frame(reader) == (True, 0x2, binary, 16)
    sock.sendall(client_frame(0x2, b""))
    assert read_frame(reader) == (True, 0x2, b"", 7)


@pytest.mark.parametrize("size, length_form, reply_form", [
    (70_000, 64, 64),   # too big for 16 bits
    (300, 16, 16),
    (65_535, 16, 16),   # the largest 16-bit length
    (65_536, 64, 64),   # the smallest that needs 64 bits
    (200, 64, 16),      # a non-minimal length from the client is accepted
])
def test_websocket_length_forms(websocket, size, length_form, reply_form):
    sock, reader = websocket
    message = os.urandom(size)
    sock.sendall(client_frame(0x2, message, length_form=length_form))
    assert read_frame(reader) == (True, 0x2, message, reply_form)


def test_websocket_echoes_a_70000_byte_text_message_in_fragments(websocket):
    sock, reader = websocket
    message = ("ü" * 35_000).encode()  # 70,000 bytes
    # Split inside a two-byte character: UTF-8 is checked per message.
    sock.sendall(client_frame(0x1, message[:40_001], final=False)
                 + client_frame(0x0, message[40_001:]))
    assert read_frame(reader) == (True, 0x1, message, 64)


def test_websocket_invalid_utf8_text_gets_close_1007(websocket):
    sock, reader = websocket
    sock.sendall(client_frame(0x1, b"\xff\xfe"))
    final, opcode, payload, _ = read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(payload, "big") == 1007


def test_websocket_reassembles_fragments_around_a_ping(websocket):
    sock, reader = websocket
    sock.sendall(client_frame(0x1, b"frag", final=False)
                 + client_frame(0x9, b"mid")
                 + client_frame(0x0, b"men", final=False)
                 + client_frame(0x0, b"ted"))
    assert read_frame(reader) == (True, 0xA, b"mid", 7)
    assert read_frame(reader) == (True, 0x1, b"fragmented", 7)


def test_websocket_ping_gets_pong(websocket):
    sock, reader = websocket
    sock.sendall(client_frame(0x9, b"are you there"))
    assert read_frame(reader) == (True, 0xA, b"are you there", 7)
    sock.sendall(client_frame(0xA, b"unsolicited") + client_frame(0x9, b""))
    assert read_frame(reader) == (True, 0xA, b"", 7)


def test_websocket_close_handshake(websocket):
    sock, reader = websocket
    sock.sendall(client_frame(0x8, (1000).to_bytes(2, "big") + b"bye"))
    final, opcode, payload, _ = read_frame(reader)
    assert (final, opcode) == (True, 0x8)
    assert int.from_bytes(payload[:2], "big") == 1000
    assert reader.read() == b""


def test_websocket_message_over_1_mib_gets_close_1009(websocket):
    sock, reader = websocket
    # Only the header: the server must refuse before the payload arrives.
    sock.sendall(bytes([0x82, 0x80 | 127]) + (1024 * 1024 + 1).to_bytes(8, "big")
                 + b"\0\0\0\0")
    final, opcode, payload, _ = read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(payload, "big") == 1009
    sock.shutdown(socket.SHUT_WR)
    assert reader.read() == b""


def test_websocket_fragments_over_1_mib_get_close_1009(websocket):
    sock, reader = websocket
    half = b"h" * (512 * 1024)
    sock.sendall(client_frame(0x2, half, final=False)
                 + client_frame(0x0, half, final=False)
                 + client_frame(0x0, b"!"))
    final, opcode, payload, _ = read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(payload, "big") == 1009


def test_websocket_unmasked_client_frame_gets_close_1002(websocket):
    sock, reader = websocket
    sock.sendall(b"\x81\x02hi")
    final, opcode, payload, _ = read_frame(reader)
    assert opcode == 0x8 and int.from_bytes(payload, "big") == 1002


def test_websocket_is_not_closed_by_the_idle_timeout():
    with DemoHost(idle_timeout_seconds=0.2) as host:
        ip = fresh_ip()
        port = free_port(ip)
        host.add_pod("long-lived", ip, port)
        with connect((ip, port)) as sock:
            sock.sendall(upgrade_request())
            reader = sock.makefile("rb")
            assert read_response(reader)[0] == 101
            time.sleep(0.6)
            sock.sendall(client_frame(0x1, b"still here"))
            assert read_frame(reader)[2] == b"still here"


# -- pod lifetime -------------------------------------------------------------

def test_remove_pod_closes_listener_and_open_websocket(host, websocket, pod):
    sock, reader = websocket
    host.remove_pod("web-0")
    assert host.pods() == []
    try:
        assert reader.read(1) == b""
    except ConnectionResetError:
        pass
    with pytest.raises(ConnectionRefusedError):
        connect(pod)
    host.remove_pod("web-0")  # unknown now: no-op
    host.remove_pod("never-existed")


def test_pod_can_be_added_again_after_removal(host, pod, open_http):
    with connect(pod) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        read_response(sock.makefile("rb"))
        host.remove_pod("web-0")
        host.add_pod("web-0-again", *pod)
    client = open_http(pod)
    client.request("GET", "/")
    assert client.getresponse().getheader("X-Pod-Name") == "web-0-again"


def test_add_pod_on_an_address_already_bound_raises_oserror(host, pod):
    with pytest.raises(OSError) as raised:
        host.add_pod("web-1", *pod)
    assert raised.value.errno == errno.EADDRINUSE
    assert host.pods() == ["web-0"]

    ip = fresh_ip()
    other = socket.socket()
    other.bind((ip, 0))
    other.listen()
    try:
        with pytest.raises(OSError):
            host.add_pod("web-2", ip, other.getsockname()[1])
    finally:
        other.close()
    assert host.pods() == ["web-0"]


def test_add_pod_rejects_a_name_already_served(host, pod):
    with pytest.raises(ValueError):
        host.add_pod("web-0", fresh_ip(), pod[1])


def test_stop_drops_connections(pod, host):
    sock = connect(pod)
    sock.sendall(upgrade_request())
    reader = sock.makefile("rb")
    assert read_response(reader)[0] == 101
    host.stop()
    try:
        assert reader.read(1) == b""
    except ConnectionResetError:
        pass
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(pod)


def test_two_hundred_pods_each_answer_then_go_away(host):
    addresses = {}
    for index in range(200):
        ip = "127.4.%d.%d" % (index // 200, index % 200 + 1)
        port = free_port(ip)
        name = "bulk-%03d" % index
        host.add_pod(name, ip, port)
        addresses[name] = (ip, port)
    assert sorted(host.pods()) == sorted(addresses)

    started = time.monotonic()
    for name, address in addresses.items():
        with connect(address) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            status, headers, body = read_response(sock.makefile("rb"))
            assert (status, headers["x-pod-name"]) == (200, name)
            assert body == page_body(name)
    assert time.monotonic() - started < 10

    for name in addresses:
        host.remove_pod(name)
    assert host.pods() == []
    for address in list(addresses.values())[::50]:
        with pytest.raises(ConnectionRefusedError):
            connect(address)


# -- standalone process -------------------------------------------------------

def test_standalone_mode_serves_and_exits_0_on_sigterm():
    ip = fresh_ip()
    port = free_port(ip)
    environment = dict(os.environ, PYTHONPATH=_KUBE_SIM_DIR)
    process = subprocess.Popen(
        [sys.executable, "-m", "kubesim.demo_pod",
         "--name", "solo", "--ip", ip, "--port", str(port)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = http.client.HTTPConnection(ip, port, timeout=TIMEOUT)
                client.request("GET", "/")
                break
            except ConnectionRefusedError:
                assert process.poll() is None, process.stderr.read()
                assert time.monotonic() < deadline, "standalone pod never listened"
                time.sleep(0.05)
        response = client.getresponse()
        assert response.getheader("X-Pod-Name") == "solo"
        assert response.read() == page_body("solo")
        client.close()

        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - sent < 5
        assert b"listening on %s:%d" % (ip.encode(), port) in process.stderr.read()
        with pytest.raises(ConnectionRefusedError):
            connect((ip, port))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def test_standalone_help_and_bind_failure():
    environment = dict(os.environ, PYTHONPATH=_KUBE_SIM_DIR)
    help_run = subprocess.run(
        [sys.executable, "-m", "kubesim.demo_pod", "--help"],
        env=environment, capture_output=True, timeout=10)
    assert help_run.returncode == 0 and b"--name" in help_run.stdout

    ip = fresh_ip()
    holder = socket.socket()
    holder.bind((ip, 0))
    holder.listen()
    try:
        failed_run = subprocess.run(
            [sys.executable, "-m", "kubesim.demo_pod", "--name", "x",
             "--ip", ip, "--port", str(holder.getsockname()[1])],
            env=environment, capture_output=True, timeout=10)
    finally:
        holder.close()
    assert failed_run.returncode == 1
    assert b"cannot serve pod x" in failed_run.stderr


def test_main_rejects_missing_name():
    with pytest.raises(SystemExit) as raised:
        demo_pod.main(["--ip", "127.0.0.1"])
    assert raised.value.code == 2
