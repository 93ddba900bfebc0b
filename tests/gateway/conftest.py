"""The module in the packaged nginx, against a real redis-server and a real
rabbitmq-server, with demo pods on their own loopback addresses. The
controller is not in the picture: `driver` plays its part through the same
Redis scripts (taken from pod-router-controller) and the same queue."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "kube-sim"))
sys.path.insert(0, str(REPO / "tests" / "support"))

from kubesim.demo_pod import DemoHost  # noqa: E402
from nginx_runner import Nginx as PlainNginx  # noqa: E402
from polling import wait_until  # noqa: E402
from servers import RedisServer, private_rabbitmq  # noqa: E402

CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER", str(REPO / "build" / "controller" / "pod-router-controller"))
QUEUE = "pod-router.create"
# Demo pods of this test run live in a /24 of their own, derived from the
# process id, so that two runs at once (the plain and the valgrind pass)
# never bind the same address.
POD_NETWORK = f"127.{100 + os.getpid() % 100}.{os.getpid() // 100 % 256}"
KEY_PREFIX = "pod-router:"


class Driver:
    """Does what the controller will do: reads creation events, marks
    sessions ready or failed through the shared Lua scripts."""

    def __init__(self, redis_server, rabbitmq):
        self.redis = redis.Redis(port=redis_server.port, decode_responses=True)
        self.rabbitmq = rabbitmq
        self.scripts = {}
        for name in ("mark_ready", "mark_failed", "begin_reap", "finish_reap"):
            source = subprocess.run([CONTROLLER, "redis-scripts", "--source", name],
                                    capture_output=True, check=True, text=True).stdout
            self.scripts[name] = self.redis.register_script(source)

    def declare(self):
        """The topology, declared as the gateway and the controller declare
        it (common/include/pod_router/amqp_topology.hpp)."""
        connection, channel = self.rabbitmq.channel()
        try:
            channel.exchange_declare("pod-router", "direct", durable=True)
            channel.exchange_declare("pod-router.dlx", "direct", durable=True)
            channel.queue_declare(QUEUE, durable=True, arguments={
                "x-dead-letter-exchange": "pod-router.dlx", "x-dead-letter-routing-key": "dead"})
            channel.queue_bind(QUEUE, "pod-router", "create")
        finally:
            connection.close()

    def events(self, timeout=5.0, expect=None):
        """Drains the creation queue; waits for `expect` events if given."""
        connection, channel = self.rabbitmq.channel()
        found = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                method, properties, body = channel.basic_get(QUEUE, auto_ack=True)
                if method is not None:
                    found.append((json.loads(body), properties))
                    continue
                if expect is None or len(found) >= expect or time.monotonic() > deadline:
                    return found
                time.sleep(0.05)
        finally:
            connection.close()

    def mark_ready(self, identity, pod, ip, port=80):
        keys = [f"{KEY_PREFIX}session:{pod}", f"{KEY_PREFIX}creating:{pod}", f"{KEY_PREFIX}activity"]
        return self.scripts["mark_ready"](keys=keys, args=[pod, identity, ip, str(port), f"{KEY_PREFIX}notify"])

    def mark_failed(self, identity, pod, reason):
        keys = [f"{KEY_PREFIX}session:{pod}", f"{KEY_PREFIX}creating:{pod}", f"{KEY_PREFIX}activity"]
        return self.scripts["mark_failed"](keys=keys, args=[pod, identity, reason, "60000", f"{KEY_PREFIX}notify"])

    def activity(self, pod):
        return self.redis.zscore(f"{KEY_PREFIX}activity", pod)


GATEWAY_CONF = """
    pod_router_redis 127.0.0.1:{redis_port} connect_timeout=500ms timeout=1s;
    pod_router_amqp amqp://127.0.0.1:{amqp_port}/ timeout=2s;
    pod_router_touch_interval {touch_interval};
    pod_router_recheck_interval {recheck_interval};
    {extra_http}
    log_format pod_router '$pod_router_status $pod_router_pod $status';
    upstream pod_router_pods {{
        pod_router_balancer;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/access.log pod_router;
        location / {{
            pod_router on;
            pod_router_identity $http_x_user_id;
            pod_router_allow_cidr {pod_network}.0/24;
            pod_router_wait_timeout {wait_timeout};
            pod_router_wait_mode {wait_mode};
            proxy_http_version 1.1;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Upgrade $http_upgrade;
            proxy_read_timeout 60s;
            proxy_pass http://pod_router_pods;
            {location_extra}
        }}
        location /by-variable/ {{
            pod_router on;
            pod_router_identity $http_x_user_id;
            pod_router_allow_cidr {pod_network}.0/24;
            proxy_pass http://$pod_router_upstream;
        }}
        location @pod_router_recover {{
            pod_router on;
            pod_router_identity $http_x_user_id;
            pod_router_allow_cidr {pod_network}.0/24;
            proxy_pass http://pod_router_pods;
        }}
        location = /pod-router/metrics {{
            pod_router_status;
        }}
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
"""


class Gateway(PlainNginx):
    # Two workers: the creation lock, the notifications and the metrics must
    # hold across worker processes, not just within one.
    workers = 2

    def configure(self, redis_server, rabbitmq, wait_timeout="10s", touch_interval="10s",
                  wait_mode="hold", extra_http="", location_extra="", workers=2, extra_main="",
                  amqp_port=None, recheck_interval="500ms"):
        self.workers = workers
        self.write_conf(GATEWAY_CONF.format(
            redis_port=redis_server.port, amqp_port=amqp_port or rabbitmq.port, port=self.port,
            prefix=self.prefix,
            wait_timeout=wait_timeout, touch_interval=touch_interval, wait_mode=wait_mode,
            recheck_interval=recheck_interval,
            extra_http=extra_http, location_extra=location_extra, pod_network=POD_NETWORK),
            extra_main)
        result = self.test_config()
        assert result.returncode == 0, result.stderr
        return self

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def access_log(self, at_least=1):
        """Its lines, once there are at_least: nginx logs after it answers."""
        path = self.prefix / "access.log"

        def lines():
            found = path.read_text().splitlines() if path.exists() else []
            return found if len(found) >= at_least else None

        return wait_until(lines, timeout=5, what=f"{at_least} access log lines")

    def reload(self):
        self.process.send_signal(signal.SIGHUP)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq():
    with private_rabbitmq() as broker:
        yield broker


@pytest.fixture
def driver(redis_server, rabbitmq):
    drv = Driver(redis_server, rabbitmq)
    drv.declare()
    drv.redis.flushall()
    drv.events(timeout=0)
    return drv


@pytest.fixture(scope="session")
def pods():
    host = DemoHost()
    host.start()
    yield host
    host.stop()


@pytest.fixture
def gateway(tmp_path):
    server = Gateway(tmp_path)
    yield server
    server.stop()
    assert server.valgrind_findings() == []
    # whatever a test provoked, nginx must not have had to complain about us
    log = server.error_log()
    for sign in ("[alert]", "[crit]", "[emerg]", "header already sent", "without \"pod_router on\""):
        assert sign not in log, f"{sign} in the error log:\n{log[-3000:]}"
