"""Runs the packaged nginx (/usr/sbin/nginx) with the built module loaded,
in a prefix folder of its own (conf, logs, pid, temp paths), so tests run
in parallel and leave nothing behind. Shared by tests/nginx and
tests/gateway."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

NGINX = os.environ.get("POD_ROUTER_NGINX", "/usr/sbin/nginx")
MODULE = os.environ.get("POD_ROUTER_MODULE", "")

CONF_TEMPLATE = """
load_module {module};
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http}
}}
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Nginx:
    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.process = None
        self.port = free_port()

    def write_conf(self, http_block: str):
        self.conf.write_text(
            CONF_TEMPLATE.format(module=MODULE, prefix=self.prefix, http=http_block)
        )

    def test_config(self):
        return subprocess.run(
            [NGINX, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self):
        self.process = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"nginx exited with {self.process.returncode}: "
                    f"{self.process.stderr.read().decode()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nginx did not listen within 10 s")

    def stop(self):
        """Graceful shutdown (SIGQUIT), as an operator would do it."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGQUIT)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError("nginx did not stop within 10 s of SIGQUIT")

    def error_log(self):
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""


