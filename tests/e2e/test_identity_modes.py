"""The identity switch of the local stack (POD_ROUTER_IDENTITY). header, the
session's stack: up says plainly that X-User-ID is trusted from any client.
signed: nginx restarted with the identity taken from a signed token
("Authorization: Bearer TOKEN", pod_router_identity_secret), minted by
`pod-router-controller sign`; a genuine token reaches its user's pod, a
forged or tampered one, or X-User-ID alone, gets 401, and the identity
secret shows nowhere; nginx is put back in header mode afterwards. Any other
mode, or switching a running nginx, is refused."""

import os
import signal
import subprocess

import pytest

from conftest import REPO
from polling import wait_until

CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER",
                            str(REPO / "build" / "controller" / "pod-router-controller"))


def up(stack, mode, check=True):
    saved = dict(stack.env)
    stack.env["POD_ROUTER_IDENTITY"] = mode
    try:
        return stack.script("up", check=check)
    finally:
        stack.env = saved


def restart_nginx(stack, mode):
    pid = int((stack.run_dir / "pids" / "nginx.pid").read_text())
    os.kill(pid, signal.SIGQUIT)
    wait_until(lambda: stack.script("status", check=False).returncode != 0, what="nginx stopped")
    return up(stack, mode).stdout


def sign(secret_file, identity, *options):
    done = subprocess.run([CONTROLLER, "sign", "--secret-file", str(secret_file), *options, identity],
                          capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def signed(stack):
    output = restart_nginx(stack, "signed")
    try:
        yield output
    finally:
        restart_nginx(stack, "header")


def test_a_signed_token_reaches_its_pod_and_nothing_else_gets_in(stack, signed):
    secret_file = stack.run_dir / "secrets" / "identity-secret"
    # the secret: 64 hex characters, mode 0600, made once
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    secret = stack.secret("identity-secret")
    assert len(secret) == 64 and all(c in "0123456789abcdef" for c in secret)
    # up says how to mint a token and use it
    assert "sign --secret-file" in signed and "Authorization: Bearer" in signed
    conf = (stack.run_dir / "nginx" / "identity.conf").read_text()
    assert f"pod_router_identity_secret {secret_file};" in conf

    token = sign(secret_file, "signed-alice")
    status, headers, body = stack.get(headers={"Authorization": f"Bearer {token}"})
    assert status == 200, body
    assert headers["X-Pod-Name"] == stack.pod_name("signed-alice")

    # a token from another secret, and a genuine one with its identity swapped
    other = stack.run_dir / "other-identity-secret"
    other.write_text(os.urandom(32).hex() + "\n")
    other.chmod(0o600)
    forged = sign(other, "signed-alice")
    mallory = sign(secret_file, "signed-mallory").split(".")
    alice = token.split(".")
    tampered = ".".join([mallory[0], alice[1], *mallory[2:]])
    for bad in (forged, tampered, token[:-2], "", "Bearer"):
        status, _, body = stack.get(headers={"Authorization": f"Bearer {bad}"})
        assert status == 401, (bad, status, body)
    # the demo header means nothing in this mode
    status, _, body = stack.get("signed-alice")
    assert status == 401, body
    status, _, body = stack.get("signed-alice", headers={"Authorization": "Bearer x"})
    assert status == 401, body

    leaks = stack.where_secrets_show({"identity secret": secret})
    assert leaks == [], "\n".join(leaks)


def test_header_mode_says_it_trusts_any_client(stack):
    # the session's stack runs in the default mode, header
    assert "nginx trusts the X-User-ID header from\nany client" in stack.up_output, stack.up_output
    assert "pod_router_identity $http_x_user_id;" in (stack.run_dir / "nginx" / "identity.conf").read_text()


def test_up_refuses_an_unknown_mode_and_to_switch_a_running_nginx(stack):
    pids = {path.name: path.read_text() for path in (stack.run_dir / "pids").iterdir()}
    done = up(stack, "jwt", check=False)
    assert done.returncode != 0, done.stdout
    assert "POD_ROUTER_IDENTITY=jwt: use header" in done.stderr and "signed" in done.stderr, done.stderr
    done = up(stack, "signed", check=False)
    assert done.returncode != 0, done.stdout
    assert "nginx runs with POD_ROUTER_IDENTITY=header, not signed" in done.stderr, done.stderr
    # nothing restarted, and the stack still serves as it did
    assert {path.name: path.read_text() for path in (stack.run_dir / "pids").iterdir()} == pids
    assert stack.get("mode-user")[0] == 200
