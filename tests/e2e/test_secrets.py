"""Secrets (issue 9): the stack's Redis password and RabbitMQ credentials,
created by scripts/stack.sh in the run directory's secrets/, reach every
component through files only. None shows in a log, a process's arguments
(ps) or environment, or nginx's configuration; and without them neither
server lets anyone in."""

import os
import signal
import stat
from pathlib import Path

import pika
import pytest
import redis

from polling import wait_until


def stack_secrets(stack):
    """{name: secret string} of every secret the stack holds."""
    _, amqp_password = stack.amqp_credentials()
    secrets = {"redis password": stack.secret("redis-password"), "amqp password": amqp_password}
    if (stack.run_dir / "secrets" / "identity-secret").exists():
        secrets["identity secret"] = stack.secret("identity-secret")
    return secrets


def test_the_secrets_are_random_private_files(stack):
    folder = stack.run_dir / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("redis-password", "amqp-credentials"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    user, password = stack.amqp_credentials()
    assert user == "pod-router"
    for value in (stack.secret("redis-password"), password):
        assert len(value) == 64 and all(c in "0123456789abcdef" for c in value), value
    assert stack.secret("redis-password") != password
    # so are the servers' configuration files that hold them
    for path in (stack.run_dir / "redis" / "redis.conf", stack.run_dir / "rabbitmq" / "rabbitmq.conf"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_secret_in_logs_process_list_environment_or_nginx_conf(stack):
    # Traffic first, so that every path that touches the servers has run:
    # a creation (AMQP publish, the controller's consume and Redis writes),
    # a hit, and an nginx reload (the module reads its files again).
    assert stack.get("secrets-user")[0] == 200
    assert stack.get("secrets-user")[0] == 200
    error_log = stack.run_dir / "nginx" / "error.log"
    reloads = error_log.read_text().count("reconfiguring")
    os.kill(int((stack.run_dir / "pids" / "nginx.pid").read_text()), signal.SIGHUP)
    wait_until(lambda: error_log.read_text().count("reconfiguring") > reloads, what="nginx reloaded")
    assert stack.get("secrets-user-2")[0] == 200

    leaks = stack.where_secrets_show(stack_secrets(stack))
    assert leaks == [], "\n".join(leaks)

    # The places the issue names, each looked at (where_secrets_show reads
    # every file under the run directory, so these are in it).
    logs = [path for path in (stack.run_dir / "logs").rglob("*") if path.is_file()]
    # (the Kubernetes API's log: kube-sim.log, or cluster.log for the real one)
    assert {path.name for path in logs} >= {"redis.log", "rabbitmq.log", f"{stack.kube_dir.name}.log",
                                            "controller.log", "nginx.log"}
    assert error_log.stat().st_size > 0
    assert len(stack.processes()) >= 6  # five components, nginx's workers, RabbitMQ's VM
    # nginx's configuration names the files, and nothing else of them
    conf = (stack.run_dir / "nginx" / "nginx.conf").read_text()
    assert f"password_file={stack.run_dir}/secrets/redis-password" in conf
    assert f"credentials_file={stack.run_dir}/secrets/amqp-credentials" in conf
    # and so does the controller's command line
    controller = int((stack.run_dir / "pids" / "controller.pid").read_text())
    arguments = Path(f"/proc/{controller}/cmdline").read_bytes().split(b"\0")
    assert b"--redis-password-file" in arguments and b"--amqp-credentials-file" in arguments


def test_redis_refuses_a_client_without_the_password(stack):
    port = int(stack.env["POD_ROUTER_REDIS_PORT"])
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port).get("pod-router:activity")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGPASS"):
        redis.Redis(port=port, password="0" * 64).ping()
    assert stack.redis().ping()


def amqp_connect(stack, user, password):
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=int(stack.env["POD_ROUTER_AMQP_PORT"]), connection_attempts=1,
        credentials=pika.PlainCredentials(user, password)))


def test_rabbitmq_refuses_guest_and_a_wrong_password(stack):
    user, password = stack.amqp_credentials()
    for wrong in (("guest", "guest"), (user, "0" * 64), (user, password[:-1])):
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            amqp_connect(stack, *wrong)
    # while the stack's own user gets in, with its rights on the queue
    connection = amqp_connect(stack, user, password)
    try:
        connection.channel().queue_declare("pod-router.create", passive=True)
    finally:
        connection.close()
