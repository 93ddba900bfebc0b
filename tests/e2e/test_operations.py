"""What operators do to a running stack: change the pod template, reload
nginx under load; and what the gateway may not do: talk to the API."""

import json
import os
import signal
import subprocess
import threading
import time

import yaml

from conftest import IDLE_TIMEOUT, REPO
from polling import wait_until
from servers import ON_REAL_CLUSTER

# What PodSecurity "restricted" (the user namespace's level) asks of a pod
# and its container; kube-sim does not enforce it, a real API server does.
RESTRICTED_POD = "securityContext: {runAsNonRoot: true, runAsUser: 101, seccompProfile: {type: RuntimeDefault}}"
RESTRICTED_CONTAINER = "securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"

BAD_TEMPLATE = f"""apiVersion: v1
kind: Pod
spec:
  {RESTRICTED_POD}
  containers:
    - name: web
      image: registry.invalid/no-such-image:1
      ports: [{{containerPort: 8080}}]
      {RESTRICTED_CONTAINER}
"""


def pid_of(stack, component):
    return int((stack.run_dir / "pids" / f"{component}.pid").read_text())


def restart_controller(stack, **env):
    os.kill(pid_of(stack, "controller"), signal.SIGTERM)
    wait_until(lambda: stack.script("status", check=False).returncode != 0,
               what="the controller stopped")
    saved = dict(stack.env)
    stack.env.update(env)
    try:
        stack.script("up")
    finally:
        stack.env = saved


def test_a_bad_image_answers_502_with_the_reason_fast(stack):
    template = stack.run_dir / "bad-template.yaml"
    template.write_text(BAD_TEMPLATE)
    restart_controller(stack, POD_ROUTER_POD_TEMPLATE=str(template))
    try:
        started = time.monotonic()
        status, _, body = stack.get("bad-image-user")
        elapsed = time.monotonic() - started
        assert status == 502, body
        assert "ErrImagePull" in body or "ImagePullBackOff" in body, body
        assert elapsed < 10, elapsed  # the reason, not the 30 s wait timeout
    finally:
        restart_controller(stack)
    # with the template fixed, the user gets a pod once the failure expires
    wait_until(lambda: stack.get("bad-image-user")[0] == 200, timeout=60, interval=2,
               what="a pod after the template was fixed")


def test_nginx_reload_under_load_fails_no_request(stack):
    users = [f"reload-{n}" for n in range(4)]
    for user in users:
        assert stack.get(user)[0] == 200
    failures, answered = [], []
    stop = threading.Event()

    def load(user):
        while not stop.is_set():
            try:
                status, headers, _ = stack.get(user, timeout=30)
            except OSError as error:
                failures.append((user, repr(error)))
                continue
            answered.append(status)
            if status != 200 or headers.get("X-Pod-Name") != stack.pod_name(user):
                failures.append((user, status))

    threads = [threading.Thread(target=load, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            time.sleep(1)
            os.kill(pid_of(stack, "nginx"), signal.SIGHUP)  # nginx -s reload
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(40)
    assert len(answered) > 50
    assert failures == []


def test_the_gateway_has_no_api_access(stack):
    kubeconfig = stack.kube_dir / "kubeconfig.pod-router-system.pod-router-gateway"
    for verb, resource, namespace in (("get", "pods", "pod-router-users"),
                                      ("get", "secrets", "pod-router-system"),
                                      ("get", "leases", "pod-router-system")):
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), verb, resource, "-n",
                               namespace], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0 and "Forbidden" in done.stderr, (resource, done.stderr)
    # while the controller, with exactly the manifests' Role, works (every
    # other test), and may not go beyond it
    controller = stack.kube_dir / "kubeconfig.pod-router-system.pod-router-controller"
    done = subprocess.run(["kubectl", "--kubeconfig", str(controller), "get", "secrets", "-n",
                           "pod-router-system"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "Forbidden" in done.stderr, done.stderr


PROCESS_TEMPLATE = f"""apiVersion: v1
kind: Pod
spec:
  terminationGracePeriodSeconds: 1
  {RESTRICTED_POD}
  containers:
    - name: web
      image: kube-sim/demo-process
      ports: [{{containerPort: 8080}}]
      readinessProbe:
        httpGet: {{path: /, port: 8080}}
        periodSeconds: 1
      {RESTRICTED_CONTAINER}
"""


CONTROLLER_USER = "system:serviceaccount:pod-router-system:pod-router-controller"


def granted_to_controller():
    """(group, resource, verb, namespace) of every rule bound to the
    controller's service account in the shipped manifests (the local
    overlay the stack applied)."""
    rendered = subprocess.run(["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / "local")],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects
             if o["kind"] == "Role"}
    granted = set()
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == "pod-router-controller"
                   for s in binding["subjects"]):
            continue
        namespace = binding["metadata"]["namespace"]
        for rule in roles[(namespace, binding["roleRef"]["name"])]["rules"]:
            granted |= {(group, resource, verb, namespace) for group in rule["apiGroups"]
                        for resource in rule["resources"] for verb in rule["verbs"]}
    return granted


def audited_requests(stack):
    """(user, group, resource[/subresource], verb, namespace, allowed) of
    each request in the stack's audit log: kube-sim's --audit-log lines, or
    kube-apiserver's audit.k8s.io/v1 Events (cluster.sh --audit-log), whose
    authorizer's decision is an annotation."""
    if not ON_REAL_CLUSTER:
        for line in (stack.run_dir / "logs" / "kube-sim-audit.log").read_text().splitlines():
            entry = json.loads(line)
            resource = entry["resource"] + ("/" + entry["subresource"] if entry["subresource"] else "")
            yield (entry["user"], entry["group"], resource, entry["verb"], entry["namespace"],
                   entry["allowed"])
        return
    for line in (stack.run_dir / "logs" / "kube-apiserver-audit.log").read_text().splitlines():
        event = json.loads(line)
        target = event.get("objectRef")
        if event.get("stage") != "ResponseComplete" or not target:
            continue  # non-resource URLs (discovery); one line per request
        resource = target.get("resource", "") + ("/" + target["subresource"] if target.get("subresource")
                                                 else "")
        decision = event.get("annotations", {}).get("authorization.k8s.io/decision")
        yield (event["user"]["username"], target.get("apiGroup", ""), resource, event["verb"],
               target.get("namespace", ""), decision == "allow")


def test_the_controller_uses_exactly_the_rbac_it_is_granted(stack):
    # Two users' whole lives, so that every kind of request has been made at
    # least once: one on a pod of its own (created and watched, then
    # reaped), one on a warm pool pod (created for the pool, labelled with
    # its user when claimed, the only patch, then reaped); the pool pod left
    # free is deleted when the pool goes again.
    user = "rbac-audit"
    name = stack.pod_name(user)
    status, headers, _ = stack.get(user)
    assert status == 200 and headers["X-Pod-Name"] == name
    restart_controller(stack, POD_ROUTER_WARM_POOL_SIZE="1")
    try:
        redis = stack.redis(decode_responses=True)
        wait_until(lambda: redis.scard("pod-router:pool:free") == 1, timeout=30, interval=0.1,
                   what="a free pool pod")
        warm_user = "rbac-audit-warm"
        status, headers, _ = stack.get(warm_user)
        claimed = headers.get("X-Pod-Name", "")
        assert status == 200 and claimed.startswith("user--pool-"), (status, headers)

        def labelled():
            pod = stack.pods().get(claimed)
            return pod is not None and (pod.metadata.labels or {}).get(
                "pod-router.io/session") == stack.pod_name(warm_user)
        wait_until(labelled, timeout=10, interval=0.1, what="the claimed pool pod labelled")
        wait_until(lambda: not {name, claimed} & set(stack.pods()), timeout=IDLE_TIMEOUT + 30,
                   what="both pods reaped")
    finally:
        restart_controller(stack)

    def pool_gone():
        return stack.redis().scard("pod-router:pool:free") == 0 and not any(
            (pod.metadata.labels or {}).get("pod-router.io/pool") == "true"
            and pod.metadata.deletion_timestamp is None for pod in stack.pods().values())
    wait_until(pool_gone, timeout=30, interval=0.2, what="the free pool pod deleted")

    used, refused = set(), []
    for user, group, resource, verb, namespace, allowed in audited_requests(stack):
        if user != CONTROLLER_USER:
            continue
        key = (group, resource, verb, namespace)
        if allowed:
            used.add(key)
        elif resource != "secrets":  # kubectl's probe in test_the_gateway_has_no_api_access
            refused.append(key)
    assert refused == []
    # Nothing granted that the controller never uses, nothing used beyond the grant.
    assert used == granted_to_controller()


def test_a_killed_pod_process_recovers_on_a_new_pod(stack):
    template = stack.run_dir / "process-template.yaml"
    template.write_text(PROCESS_TEMPLATE)
    restart_controller(stack, POD_ROUTER_POD_TEMPLATE=str(template))
    try:
        user = "crash-user"
        pod = stack.pod_name(user)
        status, headers, _ = stack.get(user)
        assert status == 200 and headers["X-Pod-Name"] == pod
        uid = stack.pods()[pod].metadata.uid
        process = subprocess.run(["pgrep", "-f", f"kubesim.demo_pod --name {pod} "],
                                 capture_output=True, text=True).stdout.split()
        assert len(process) == 1, process
        os.kill(int(process[0]), signal.SIGKILL)
        # the next requests recover, on a new pod; only those caught at the
        # moment of the kill may fail
        answers = []

        def recovered():
            status, headers, _ = stack.get(user)
            answers.append(status)
            pods = stack.pods()
            return status == 200 and pod in pods and pods[pod].metadata.uid != uid
        wait_until(recovered, timeout=40, interval=0.5, what="a new pod after the kill")
        assert answers.count(200) >= 1 and all(status in (200, 502, 503) for status in answers), answers
        assert sum(1 for status in answers if status != 200) <= 2, answers
    finally:
        restart_controller(stack)
