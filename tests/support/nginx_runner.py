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
# POD_ROUTER_VALGRIND=1 runs nginx under memcheck; findings() reports what it saw.
VALGRIND = os.environ.get("POD_ROUTER_VALGRIND") == "1"
SUPPRESSIONS = Path(__file__).resolve().parent / "valgrind.supp"
MODULE = os.environ.get("POD_ROUTER_MODULE", "")

CONF_TEMPLATE = """
load_module {module};
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{main}
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
    workers = 1

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.process = None
        self.port = free_port()

    def write_conf(self, http_block: str, main_block: str = ""):
        self.conf.write_text(
            CONF_TEMPLATE.format(module=MODULE, prefix=self.prefix, http=http_block,
                                 workers=self.workers, main=main_block)
        )

    def test_config(self):
        return subprocess.run(
            [NGINX, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self):
        command = [NGINX, "-p", str(self.prefix), "-c", str(self.conf)]
        if VALGRIND:
            command = ["valgrind", "--tool=memcheck", "--leak-check=full",
                       "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                       f"--suppressions={SUPPRESSIONS}", "--num-callers=30",
                       f"--log-file={self.prefix}/valgrind.%p.log"] + command
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + (60 if VALGRIND else 10)
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
            return self.process.wait(timeout=60 if VALGRIND else 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError("nginx did not stop within 10 s of SIGQUIT")

    def valgrind_findings(self):
        """Memcheck errors and definite leaks, from every nginx process."""
        findings = []
        for log in sorted(self.prefix.glob("valgrind.*.log")):
            text = log.read_text()
            summary = [line for line in text.splitlines() if "ERROR SUMMARY:" in line]
            if not summary:
                findings.append(f"{log.name}: no summary (process killed?)")
            elif " 0 errors" not in summary[-1]:
                findings.append(f"{log.name}:\n{text[-6000:]}")
        return findings

    def error_log(self):
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""


