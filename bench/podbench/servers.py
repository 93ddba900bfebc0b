"""The processes a benchmark phase runs: the backend pod, the gateways under
comparison (nginx in four configurations, the seed's FastAPI gateway), and
the project's own servers (redis-server, rabbitmq-server, kube-sim or the
real control plane, the controller), reused from the test support code so that they start exactly
as the tests start them."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "support"))

from polling import wait_until  # noqa: E402
from servers import (KubeSim, RealCluster, RedisServer, free_port, free_port_pair,  # noqa: E402,F401
                     private_rabbitmq)

GATEWAYS = REPO / "bench" / "gateways"
NGINX = "/usr/sbin/nginx"
# What `make` built; the same variables as the tests' to measure other builds.
MODULE = Path(os.environ.get("POD_ROUTER_MODULE", REPO / "build" / "ngx_http_pod_router_module.so"))
CONTROLLER = Path(os.environ.get("POD_ROUTER_CONTROLLER",
                                 REPO / "build" / "controller" / "pod-router-controller"))
__all__ = ["BenchError", "CONTROLLER", "KubeSim", "controller_defaults", "MODULE", "Nginx", "REPO", "RealCluster",
           "RedisServer", "SeedGateway",
           "free_port", "free_port_pair", "port_open", "private_rabbitmq", "render", "stop_process", "wait_until"]

LUA_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so",
               "/usr/lib/nginx/modules/ngx_http_lua_module.so")


def controller_defaults(*names):
    """The measured controller's defaults of these settings, from its
    `run --help`, as flags: "--kube-qps 50 --kube-burst 100"."""
    text = subprocess.run([str(CONTROLLER), "run", "--help"], capture_output=True, text=True,
                          timeout=20).stdout
    found = []
    for name in names:
        match = re.search(rf"--{name} [^=\n]*=(\S+)", text)
        found.append(f"--{name} {match.group(1) if match else '?'}")
    return " ".join(found)


class BenchError(RuntimeError):
    """A phase cannot be measured: a server did not start or answers wrongly."""


def render(template, **values):
    text = (GATEWAYS / template).read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise BenchError(f"{template}: no value for {', '.join(sorted(set(left)))}")
    return text


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(process, sig=signal.SIGTERM, grace=15):
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class Nginx:
    """The packaged nginx with bench/gateways/common.conf.in around one
    case's http block."""

    def __init__(self, run_dir, name, template, port, workers, modules=(), **values):
        self.name = name
        self.port = port
        self.prefix = Path(run_dir) / name
        self.prefix.mkdir(parents=True, exist_ok=True)
        main = "\n".join(f"load_module {module};" for module in modules)
        http = render(template, PORT=port, **values)
        conf = render("common.conf.in", MAIN=main, WORKERS=workers, PREFIX=self.prefix, HTTP=http)
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(conf)
        check = subprocess.run([NGINX, "-t", "-q", "-p", str(self.prefix), "-c", str(self.conf)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise BenchError(f"nginx -t refused {self.conf}: {check.stderr.strip()}")
        self.log = open(self.prefix / "stderr.log", "ab")
        self.process = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(self.conf)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: port_open(port) or self.process.poll() is not None,
                   timeout=20, what=f"{name} nginx")
        if self.process.poll() is not None:
            raise BenchError(f"{name}: nginx exited: {self.error_log()[-2000:]}")

    def worker_pids(self):
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)],
                                  capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in children]

    def error_log(self):
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self):
        stop_process(self.process, signal.SIGQUIT)
        self.log.close()


class SeedGateway:
    """Case e: bench/gateways/seed_gateway.py under uvicorn, with as many
    worker processes as nginx has."""

    def __init__(self, run_dir, port, workers, redis_port):
        self.name = "seed"
        self.port = port
        self.log = open(Path(run_dir) / "seed-gateway.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "seed_gateway:app", "--app-dir", str(GATEWAYS),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
             "--no-access-log", "--log-level", "warning"],
            env={**os.environ, "BENCH_REDIS_PORT": str(redis_port)},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: port_open(port) or self.process.poll() is not None,
                   timeout=30, what="the seed gateway")
        if self.process.poll() is not None:
            raise BenchError("the seed gateway exited; see seed-gateway.log")
        # uvicorn's supervisor binds first; give its workers time to start.
        time.sleep(2)

    def worker_pids(self):
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)],
                                  capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in children]

    def stop(self):
        stop_process(self.process)
        self.log.close()
