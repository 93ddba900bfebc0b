"""A WebSocket held open past the idle timeout keeps its pod (the gateway
reports activity while it is open); once closed, the pod is reaped."""

import socket
import time

from conftest import IDLE_TIMEOUT
from polling import wait_until


def test_an_open_websocket_keeps_its_pod_past_the_idle_timeout(stack):
    user = "ws-user"
    pod = stack.pod_name(user)
    assert stack.get(user)[0] == 200  # the pod exists and is ready
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as ws:
        ws.sendall(b"GET /chat HTTP/1.1\r\nHost: local.gateway.com\r\nX-User-ID: " +
                   user.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert b"101 Switching Protocols" in ws.recv(4096)
        # silent, well past the idle timeout: the pod stays
        time.sleep(IDLE_TIMEOUT + 4)
        pods = stack.pods()
        assert pod in pods and pods[pod].metadata.deletion_timestamp is None
        # and the connection still works: the pod echoes a masked text frame
        ws.sendall(bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]))
        assert ws.recv(16) == bytes([0x81, 0x02]) + b"hi"
    closed_at = time.monotonic()
    wait_until(lambda: stack.gone_or_going(pod),
               timeout=IDLE_TIMEOUT + 15, what="the pod reaped once the WebSocket closed")
    assert time.monotonic() - closed_at >= IDLE_TIMEOUT - 2
