"""Starts kube-sim for the tests and talks to it the way users do: kubectl,
the official Python client, or raw HTTPS with a token."""

import ipaddress
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from polling import wait_until  # noqa: E402 (needs the path above)

REPO = Path(__file__).resolve().parents[2]
KUBE_SIM = REPO / "scripts" / "kube-sim" / "kube-sim"
KUBECTL = os.environ.get("POD_ROUTER_KUBECTL", "kubectl")

# Images the tests use, each a real command on this machine.
TEST_IMAGES = {
    "images": {
        "crasher": {"command": ["/bin/sh", "-c", "echo crashing; exit 3"]},
        "stubborn": {"command": ["/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]},
        "python-http": {"command": [sys.executable, "-m", "http.server", "{port}", "--bind", "{pod_ip}"]},
        "demo-process": {"command": [sys.executable, "-m", "kubesim.demo_pod", "--name", "{pod_name}",
                                     "--ip", "{pod_ip}", "--port", "{port}"],
                         "env": {"PYTHONPATH": str(REPO / "scripts" / "kube-sim")}},
    }
}


class KubeSim:
    def __init__(self, state_dir, *extra_args):
        # Each kube-sim is a node with its own pod CIDR (a random /20 of
        # 127.20.0.0-127.219.255.255, 3,200 to choose from), so that
        # kube-sims running at once never hand out the same address.
        block = random.SystemRandom().randrange(200 * 16)
        pod_cidr = f"127.{20 + block // 16}.{(block % 16) * 16}.0/20"
        self.pod_network = ipaddress.ip_network(pod_cidr)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        image_map = self.state_dir / "images.json"
        image_map.write_text(json.dumps(TEST_IMAGES))
        self.log_path = self.state_dir / "kube-sim.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(KUBE_SIM), "--state-dir", str(self.state_dir), "--port", "0",
             "--image-map", str(image_map), "--start-delay", "0.2", "--crash-backoff", "1",
             "--service-account", "pod-router-system/pod-router-controller",
             "--service-account", "pod-router-system/pod-router-gateway",
             "--pod-cidr", pod_cidr, *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.kubeconfig = self.state_dir / "kubeconfig"
        deadline = time.monotonic() + 20
        while not self.kubeconfig.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kube-sim did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        config = json.loads(self.kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.admin_token = config["users"][0]["user"]["token"]
        self.ca_file = self.state_dir / "ca.crt"

    def owns_address(self, address):
        return ipaddress.ip_address(address) in self.pod_network

    def kubeconfig_for(self, namespace, name):
        return self.state_dir / f"kubeconfig.{namespace}.{name}"

    def token_for(self, namespace, name):
        config = json.loads(self.kubeconfig_for(namespace, name).read_text())
        return config["users"][0]["user"]["token"]

    def kubectl(self, *args, kubeconfig=None, input=None, timeout=60, check=True):
        if shutil.which(KUBECTL) is None:
            raise AssertionError(f"{KUBECTL} is not on the PATH; these tests drive kubectl 1.32")
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def request(self, method, path, body=None, token=None, content_type="application/json"):
        """(status, decoded JSON or text) for one raw HTTPS request."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.server + path, data=data, method=method)
        if token is not False:
            request.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as reply:
                status, payload = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")

    def watch(self, path, token=None, timeout=30):
        """Every event of a watch (path with ?watch=true&...&timeoutSeconds=N)
        until the server ends the stream: give a resourceVersion to replay
        what happened since it."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(self.server + path)
        request.add_header("Authorization", f"Bearer {token or self.admin_token}")
        with urllib.request.urlopen(request, context=context, timeout=timeout) as reply:
            return [json.loads(line) for line in reply if line.strip()]

    def stop(self, timeout=20):
        return stop_child(self.process, self._log, timeout)


def stop_child(process, log, timeout):
    """SIGTERM, then SIGKILL after `timeout` s; closes its log; its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    log.close()
    return process.returncode


wait_for = wait_until


def pod_manifest(name, image="httpd:2.4", port=80, labels=None, probe=True, grace=None, **spec):
    container = {"name": "web", "image": image, "ports": [{"containerPort": port}]}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": labels or {"app": "test"}},
           "spec": {"containers": [container], **spec}}
    if grace is not None:
        pod["spec"]["terminationGracePeriodSeconds"] = grace
    return pod
