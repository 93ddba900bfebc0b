"""pod-router-controller's offline subcommands, run as an operator would."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest

CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER", "")


def run(*args, stdin=None):
    if not CONTROLLER or not os.access(CONTROLLER, os.X_OK):
        pytest.fail(f"POD_ROUTER_CONTROLLER does not name the built binary: {CONTROLLER!r}")
    return subprocess.run(
        [CONTROLLER, *args], input=stdin, capture_output=True, timeout=30
    )


def test_help_lists_every_subcommand():
    result = run("--help")
    assert result.returncode == 0
    for word in (b"pod-name", b"check-event", b"redis-scripts", b"sign", b"--version"):
        assert word in result.stdout


def test_no_subcommand_is_a_usage_error():
    result = run()
    assert result.returncode != 0
    assert b"subcommand" in result.stderr


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(b"pod-router-controller ")


def test_pod_names_match_the_shared_rule():
    result = run("pod-name", "alice", "Alice", "demo-user-1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == [
        "user-alice",
        "user-alice---3bc51062973c458d",
        "user-demo-user-1",
    ]


def test_pod_name_prefix_flag():
    result = run("pod-name", "--pod-name-prefix", "sess", "alice")
    assert result.stdout == b"sess-alice\n"
    bad = run("pod-name", "--pod-name-prefix", "Bad", "alice")
    assert bad.returncode == 2
    assert b"pod name prefix must start with a lowercase letter" in bad.stderr


def test_invalid_identity_is_reported_escaped_and_others_still_printed():
    result = run("pod-name", "ok", "bad\x1b[31m")
    assert result.returncode == 1
    assert result.stdout == b"user-ok\n"
    assert b"\x1b" not in result.stderr
    assert b'"bad\\x1b[31m": identity contains control character U+001B' in result.stderr


def test_check_event_accepts_a_valid_event_from_stdin():
    event = {
        "version": 1,
        "identity": "alice",
        "pod": "user-alice",
        "request_id": "r-1",
        "timestamp_ms": 1795000000000,
    }
    result = run("check-event", stdin=json.dumps(event).encode())
    assert result.returncode == 0, result.stderr
    assert b"valid creation event: version=1 pod=user-alice request_id=r-1" in result.stdout


def test_check_event_explains_a_rejection(tmp_path):
    path = tmp_path / "event.json"
    path.write_text('{"version": 3}')
    result = run("check-event", str(path))
    assert result.returncode == 1
    assert b"creation event version 3 is not supported" in result.stderr
    missing = run("check-event", str(tmp_path / "absent.json"))
    assert missing.returncode == 2
    assert b"cannot open" in missing.stderr


def test_redis_scripts_are_listed_and_printable():
    listing = run("redis-scripts")
    assert listing.returncode == 0
    names = [line.split(b"\t")[0] for line in listing.stdout.splitlines()]
    assert names == [
        b"route",
        b"mark_ready",
        b"mark_failed",
        b"begin_reap",
        b"finish_reap",
        b"abandon_creation",
        b"touch",
        b"mark_stale",
        b"set_stage",
        b"pool_ready",
        b"pool_retire",
        b"pool_forget",
    ]
    source = run("redis-scripts", "--source", "route")
    assert b"redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4])" in source.stdout
    unknown = run("redis-scripts", "--source", "nope")
    assert unknown.returncode == 2


# sign: checked against an independent implementation of the token format
# (docs/security.md), as the gateway's tests mint theirs.
def verify_token(token, secret):
    def unb64(text):
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    version, identity, expiry, mac = token.split(".")
    expected = hmac.new(secret, f"{version}.{identity}.{expiry}".encode(), hashlib.sha256).digest()
    assert version == "v1" and hmac.compare_digest(unb64(mac), expected)
    return unb64(identity).decode(), int(expiry)


def test_sign_prints_one_verifiable_token_per_identity(tmp_path):
    secret = b"0123456789abcdef" * 4
    (tmp_path / "secret").write_bytes(secret + b"\n")
    before = int(time.time())
    result = run("sign", "--secret-file", str(tmp_path / "secret"), "--ttl", "15m", "alice",
                 "Zo\u00eb")
    assert result.returncode == 0, result.stderr
    tokens = result.stdout.decode().split()
    claims = [verify_token(t, secret) for t in tokens]
    assert [identity for identity, _ in claims] == ["alice", "Zo\u00eb"]
    for _, expiry in claims:
        assert before + 900 <= expiry <= int(time.time()) + 900


@pytest.mark.parametrize("secret, args, message", [
    (b"short\n", ["alice"], b"at least 32 bytes"),
    (b"k" * 40, ["--ttl", "0s", "alice"], b"--ttl"),
    (b"k" * 40, ["--ttl", "soon", "alice"], b"--ttl"),
    (b"k" * 40, [""], b"identity is empty"),
    (None, ["alice"], b"cannot read the secret file"),
])
def test_sign_refuses_bad_input_clearly(tmp_path, secret, args, message):
    if secret is not None:
        (tmp_path / "secret").write_bytes(secret)
    result = run("sign", "--secret-file", str(tmp_path / "secret"), *args)
    assert result.returncode != 0 and result.stdout == b""
    assert message in result.stderr
