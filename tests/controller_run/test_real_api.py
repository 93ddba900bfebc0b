"""What only a real kube-apiserver can show: the controller's service-account
token expiring and rotated under it, and the API server restarting under
it. Runs in the real control plane tier (POD_ROUTER_CLUSTER=real)."""

import base64
import json
import os
import signal
import ssl
import urllib.error
import urllib.request

import pytest

from conftest import ON_REAL_CLUSTER, SYSTEM_NS, wait_until

pytestmark = pytest.mark.skipif(not ON_REAL_CLUSTER, reason="real control plane tier only")

ACCOUNT = "pod-router-controller"


def bound_token(stack, anchor):
    """A TokenRequest token for the controller's account bound to the Secret
    `anchor`: deleting the Secret revokes it at once, as the end of a pod
    revokes the token projected into it. (TokenRequest's shortest lifetime
    is 10 minutes; binding is how a test sees expiry without waiting.)"""
    stack.core.create_namespaced_secret(SYSTEM_NS, {"metadata": {"name": anchor}})
    made = stack.kube.kubectl("create", "token", ACCOUNT, "-n", SYSTEM_NS, "--duration", "10m",
                              "--bound-object-kind", "Secret", "--bound-object-name", anchor)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def token_refused(stack, token):
    """Whether the API server answers 401 to `token` now. A revoked token
    still passes for up to 10 s after its Secret is gone: kube-apiserver
    caches a token's successful authentication that long."""
    server = json.loads(stack.kube.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    context = ssl.create_default_context(cafile=str(stack.kube.directory / "pki" / "ca.crt"))
    request = urllib.request.Request(f"{server}/api", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=5):
            return False
    except urllib.error.HTTPError as error:
        return error.code == 401


def write_atomically(path, text):
    """As the kubelet updates a projected token: a new file renamed over the
    old, so a reader never sees half a token."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    os.replace(partial, path)


def token_file_kubeconfig(stack, token_file):
    """The service account's kubeconfig, reading its token from `token_file`
    (tokenFile) as an in-cluster client reads the projected one."""
    config = json.loads(stack.kube.service_account_kubeconfig().read_text())
    del config["users"][0]["user"]["token"]
    config["users"][0]["user"]["tokenFile"] = str(token_file)
    path = stack.directory / "kubeconfig.token-file"
    path.write_text(json.dumps(config))
    return path


def creations(controller):
    return controller.metric("pod_router_controller_pods_created_total")


def test_a_rotated_token_is_read_again_and_the_revoked_one_never_used(stack):
    token_file = stack.directory / "token"
    old_token = bound_token(stack, "controller-token-1")
    write_atomically(token_file, old_token)
    controller = stack.controller(kubeconfig=token_file_kubeconfig(stack, token_file)).start()
    first = stack.request("rotation-before")
    stack.wait_session(first, "ready", timeout=30)

    # The kubelet writes a new token before the old one ends; then the old
    # one is revoked. The controller must be using the new one by then.
    write_atomically(token_file, bound_token(stack, "controller-token-2"))
    stack.core.delete_namespaced_secret("controller-token-1", SYSTEM_NS)
    wait_until(lambda: token_refused(stack, old_token), timeout=30, what="the old token refused")
    second = stack.request("rotation-after")
    stack.wait_session(second, "ready", timeout=30)
    assert creations(controller) == 2
    assert controller.get("/readyz")[0] == 200
    refused = [line for line in controller.log_lines() if line.get("status") == 401]
    assert refused == [], refused[:3]


def test_a_revoked_token_without_a_new_one_is_reported_then_recovers(stack):
    token_file = stack.directory / "token"
    token = bound_token(stack, "controller-token-3")
    write_atomically(token_file, token)
    controller = stack.controller(kubeconfig=token_file_kubeconfig(stack, token_file)).start()
    # Revoked with nothing in its place: the API answers 401, the event is
    # retried, not lost; a new token in the file lets it through.
    stack.core.delete_namespaced_secret("controller-token-3", SYSTEM_NS)
    wait_until(lambda: token_refused(stack, token), timeout=30, what="the token refused")
    pod = stack.request("revoked")
    wait_until(lambda: any(line.get("status") == 401 or "401" in str(line.get("error", ""))
                           for line in controller.log_lines()),
               timeout=30, what="the 401 logged")
    assert pod not in stack.pods()
    write_atomically(token_file, bound_token(stack, "controller-token-4"))
    stack.wait_session(pod, "ready", timeout=60)
    assert creations(controller) == 1


def restart_api_server(stack, while_down=None):
    """kube-apiserver killed (SIGKILL: a crash, every connection reset) and
    started again by cluster.sh up, which starts only what is not running;
    while_down() runs in between. (A SIGTERM would do too, but with watches
    open it drains for 60 s.)"""
    pid = int((stack.kube.directory / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    # (not kill -0: a stopped orphan may stay a zombie for a while)
    wait_until(lambda: "kube-apiserver: not running" in stack.kube.run("status").stdout,
               timeout=60, what="kube-apiserver stopped")
    if while_down is not None:
        while_down()
    stack.kube.start()


def etcd(stack, method, body):
    """One call of etcd's JSON gateway (/v3/...) on the cluster's etcd."""
    request = urllib.request.Request(f"http://127.0.0.1:{stack.kube.etcd_port}/v3/{method}",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def compact_etcd_history(stack):
    """One more write to etcd (a key of no resource), then its history
    compacted up to it: every resourceVersion a client saw before is gone,
    as after a long outage on a busy cluster."""
    def b64(text):
        return base64.b64encode(text.encode()).decode()
    put = etcd(stack, "kv/put", {"key": b64("/pod-router-test/compaction"), "value": b64("x")})
    etcd(stack, "kv/compaction", {"revision": put["header"]["revision"], "physical": True})


def test_the_controller_carries_on_after_the_api_server_restarts(stack):
    controller = stack.controller().start()
    before = stack.request("restart-before")
    stack.wait_session(before, "ready", timeout=30)
    restart_api_server(stack)
    # Its watch and Lease renewals failed meanwhile; a new user is served
    # once the API is back, and the old pod is still known (not re-created).
    after = stack.request("restart-after")
    stack.wait_session(after, "ready", timeout=90)
    assert creations(controller) == 2
    assert set(stack.pods()) == {before, after}
    wait_until(lambda: controller.get("/readyz")[0] == 200, timeout=60, what="ready again")


def test_the_watch_relists_after_410_gone_from_a_real_api_server(stack):
    # kube-sim's test_the_watch_relists_after_410_gone, with the real cause:
    # the API server comes back with etcd's history compacted past the
    # resourceVersion the controller's watch resumes from.
    controller = stack.controller().start()
    before = stack.request("gone-before")
    stack.wait_session(before, "ready", timeout=30)
    relists = controller.metric("pod_router_controller_watch_relists_total")
    restart_api_server(stack, while_down=lambda: compact_etcd_history(stack))
    wait_until(lambda: controller.metric("pod_router_controller_watch_relists_total") > relists,
               timeout=90, what="a relist after 410 Gone")
    assert any(line.get("code") == 410 for line in controller.log_lines()
               if line.get("msg") == "watch ended by the server")
    # The list found the pod it had: known, not created again; a new user
    # is served.
    after = stack.request("gone-after")
    stack.wait_session(after, "ready", timeout=90)
    assert creations(controller) == 2
    assert set(stack.pods()) == {before, after}
