"""1,000 pods on this machine: created at 50 per second with no error, all
Running and Ready at once, each answering HTTP on its own address, then
deleted. Loopback only, bounded in count and time."""

import http.client
import json
import ssl
import time

import pytest

from cluster import KubeSim, pod_manifest, wait_for

POD_COUNT = 1000
CREATIONS_PER_SECOND = 50


class Connection:
    """One keep-alive HTTPS connection, as a client library would hold."""

    def __init__(self, sim):
        host, port = sim.server.removeprefix("https://").split(":")
        context = ssl.create_default_context(cafile=str(sim.ca_file))
        self._connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
        self._headers = {"Authorization": f"Bearer {sim.admin_token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self._connection.request(method, path, body=None if body is None else json.dumps(body),
                                 headers=self._headers)
        reply = self._connection.getresponse()
        return reply.status, json.loads(reply.read())


@pytest.mark.slow
def test_a_thousand_pods_at_fifty_per_second(tmp_path):
    sim = KubeSim(tmp_path / "scale")
    try:
        api = Connection(sim)
        started = time.monotonic()
        failures = []
        for index in range(POD_COUNT):
            # Paced against the schedule, not the previous call, so slow calls do not lower the rate.
            delay = started + index / CREATIONS_PER_SECOND - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            manifest = pod_manifest(f"scale-{index:04d}", labels={"test": "scale"})
            manifest["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = 10
            status, body = api.call("POST", "/api/v1/namespaces/default/pods", manifest)
            if status != 201:
                failures.append((index, status, body.get("message")))
        assert failures == []

        def all_ready():
            status, listed = api.call("GET", "/api/v1/namespaces/default/pods?labelSelector=test%3Dscale")
            assert status == 200
            ready = [p for p in listed["items"]
                     if any(c["type"] == "Ready" and c["status"] == "True"
                            for c in p["status"].get("conditions") or [])]
            return listed["items"] if len(ready) == POD_COUNT else None

        pods = wait_for(all_ready, timeout=120, interval=1, what=f"{POD_COUNT} pods Ready")
        addresses = {p["status"]["podIP"] for p in pods}
        assert len(addresses) == POD_COUNT

        wrong = []
        for pod in pods:
            connection = http.client.HTTPConnection(pod["status"]["podIP"], 80, timeout=10)
            connection.request("GET", "/")
            reply = connection.getresponse()
            body = reply.read()
            if reply.status != 200 or reply.headers["X-Pod-Name"] != pod["metadata"]["name"] \
                    or b"It works!" not in body:
                wrong.append(pod["metadata"]["name"])
            connection.close()
        assert wrong == []

        status, _ = api.call("DELETE", "/api/v1/namespaces/default/pods?labelSelector=test%3Dscale")
        assert status == 200
        wait_for(lambda: not api.call("GET", "/api/v1/namespaces/default/pods?labelSelector=test%3Dscale")[1]["items"],
                 timeout=120, interval=1, what="all pods deleted")
    finally:
        assert sim.stop() == 0
