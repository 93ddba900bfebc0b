"""Hostile identities over HTTP: each is refused with 400 (or the missing-
identity 401), or gets a pod of its own with a safe name; nothing crashes,
and no raw identity byte reaches a pod name, a label, a Redis key or a log
line."""

import json
import re

import pytest

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

HOSTILE = [
    "",                                 # empty: no identity (401)
    "A" * 10_000,                       # 10 KB: over the length limit
    "Ünïcødé-用户",                      # non-ASCII
    "UPPER-Case",
    "../x",
    "a\r\nX-Injected: 1",               # CR/LF: a header of its own, not part of the identity
    "%00nul",
    '{"json": [1, 2]}',
    "key: value\n- item",
    "app.kubernetes.io/managed-by=evil",  # label-injection attempt
    "x,pod-router.io/identity-hash=0",
    "$(rm -rf /)",
    "' OR 1=1 --",
]


def send(stack, identity):
    # http.client refuses headers with CR/LF; send the bytes ourselves
    import socket
    with socket.create_connection(("127.0.0.1", stack.port), timeout=40) as connection:
        request = (b"GET / HTTP/1.1\r\nHost: local.gateway.com\r\nConnection: close\r\nX-User-ID: "
                   + identity.encode("utf-8") + b"\r\n\r\n")
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body.decode("utf-8", "replace")


@pytest.mark.parametrize("identity", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_identities_are_refused_or_get_a_safe_pod_of_their_own(stack, identity):
    status, head, body = send(stack, identity)
    assert status in (200, 400, 401, 431), (status, body[:300])
    if identity == "":
        assert status == 401
    # A CR/LF ends the header line: what follows is another header, never
    # part of the identity.
    identity = identity.split("\r\n")[0]
    if status == 200:
        assert "It works!" in body
        name = re.search(r"X-Pod-Name: (\S+)", head).group(1)
        assert DNS_LABEL.match(name) and len(name) <= 63, name
        assert name == stack.pod_name(identity)
        pod = stack.pods()[name]
        for key, value in pod.metadata.labels.items():
            assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)
        assert "evil" not in pod.metadata.labels.get("app.kubernetes.io/managed-by", "")
        assert pod.metadata.annotations["pod-router.io/identity"] == identity


def test_no_raw_identity_in_redis_keys_or_logs(stack):
    for identity in HOSTILE:
        send(stack, identity)
    client = stack.redis()
    for key in client.scan_iter(count=1000):
        text = key.decode("utf-8", "replace")
        assert re.match(r"^pod-router:(session:|creating:)?[a-z0-9-]*$", text) or text in (
            "pod-router:activity", "pod-router:pool:free", "pod-router:pool:address",
            "pod-router:pool:claimed", "pod-router:pool:claims", "pod-router:pool:target"), text
    # nginx writes no identity into its logs; the controller writes them only
    # inside JSON strings, escaped, never as raw bytes
    nginx_logs = "".join((stack.run_dir / "nginx" / name).read_text(errors="replace")
                         for name in ("error.log", "access.log"))
    for identity in HOSTILE:
        if len(identity) > 3:
            assert identity not in nginx_logs, identity
    for line in stack.log("controller").splitlines():
        assert "\r" not in line and "\x00" not in line
        json.loads(line)  # every line is one well-formed JSON object
