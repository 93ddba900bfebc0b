"""Each object has what it needs, and what one object names, another
provides: selectors, Services, ConfigMaps, Secrets, service accounts."""

import re

from conftest import (REPO, CLUSTER_SCOPED, NAMESPACED, containers, helm_values, ingress_nginx_pod_labels,
                      labels_match, pod_specs, referenced)

# A version: v1.2, 1.2.3, 7.2.7-alpine, 1.28.0-alpine...; or a digest.
PINNED = re.compile(r"^[^@\s]+(:v?\d+(\.\d+)+[-\w.]*)?(@sha256:[0-9a-f]{64})?$")


def test_objects_have_what_they_need(rendering):
    for o in rendering.objects:
        assert o.get("apiVersion") and o.get("kind") and o["metadata"].get("name"), o
        kind, meta = o["kind"], o["metadata"]
        assert kind in NAMESPACED | CLUSTER_SCOPED, f"sort {kind} into conftest's lists"
        assert bool(meta.get("namespace")) == (kind in NAMESPACED), (kind, meta)
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == "pod-router", (kind, meta)


def test_names_are_unique(rendering):
    seen = set()
    for o in rendering.objects:
        key = (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        assert key not in seen, key
        seen.add(key)


def test_workload_selectors_select_their_own_pods(rendering):
    for w in rendering.workloads():
        selector = w["spec"]["selector"]["matchLabels"]
        assert selector and labels_match(selector, w["spec"]["template"]["metadata"]["labels"]), w


def pods_in(rendering, namespace):
    """The labels of every kind of pod that runs in the namespace."""
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in rendering.workloads()
            if w["metadata"]["namespace"] == namespace]
    if namespace == "ingress-nginx":
        pods.append(ingress_nginx_pod_labels())
    return pods


def test_services_and_budgets_select_pods(rendering):
    for o in rendering.of_kind("Service", "PodDisruptionBudget"):
        selector = o["spec"]["selector"]
        selector = selector.get("matchLabels", selector) if o["kind"] == "PodDisruptionBudget" else selector
        matching = [p for p in pods_in(rendering, o["metadata"]["namespace"]) if labels_match(selector, p)]
        assert matching, f"{o['kind']}/{o['metadata']['name']} selects no pod"


def container_ports(rendering, service):
    """Port names and numbers of the pods a Service selects."""
    namespace = service["metadata"]["namespace"]
    if namespace == "ingress-nginx":
        return None  # the chart's pods: checked through gateway.conf's listen ports
    names, numbers = set(), set()
    for w in rendering.workloads():
        template = w["spec"]["template"]
        if w["metadata"]["namespace"] == namespace and labels_match(service["spec"]["selector"],
                                                                    template["metadata"]["labels"]):
            for c in template["spec"]["containers"]:
                for port in c.get("ports") or []:
                    names.add(port.get("name"))
                    numbers.add(port["containerPort"])
    return names, numbers


def test_service_target_ports_exist(rendering):
    for service in rendering.of_kind("Service"):
        ports = container_ports(rendering, service)
        if ports is None:
            continue
        names, numbers = ports
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in (names if isinstance(target, str) else numbers), (service, port)


def test_gateway_service_reaches_the_module_server_in_ingress_nginx(rendering):
    service = rendering.find("Service", "ingress-nginx", "pod-router-gateway")
    if service is None:
        return
    conf = rendering.find("ConfigMap", "ingress-nginx", "pod-router-gateway")["data"]["gateway.conf"]
    listening = {int(p) for p in re.findall(r"^\s*listen\s+(\d+);", conf, re.M)}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= listening


def test_what_pods_mount_and_run_as_exists(rendering):
    for w in rendering.workloads():
        namespace, spec = w["metadata"]["namespace"], w["spec"]["template"]["spec"]
        for kind, name in referenced(spec):
            assert rendering.find(kind, namespace, name), (w["metadata"]["name"], kind, name)
        account = spec.get("serviceAccountName")
        if account:
            assert rendering.find("ServiceAccount", namespace, account), account
        if w["kind"] == "StatefulSet":
            headless = rendering.find("Service", namespace, w["spec"]["serviceName"])
            assert headless and headless["spec"].get("clusterIP") == "None"


def test_ingress_nginx_values_mount_what_the_overlay_renders(rendering):
    if rendering.find("Service", "ingress-nginx", "pod-router-gateway") is None:
        return
    spec = {"volumes": helm_values()["controller"]["extraVolumes"]}
    for kind, name in referenced(spec):
        assert rendering.find(kind, "ingress-nginx", name), (kind, name)


def test_ingress_routes_local_gateway_com_to_the_gateway(rendering):
    ingresses = rendering.of_kind("Ingress")
    if rendering.find("Service", "ingress-nginx", "pod-router-gateway") is None:
        assert ingresses == []
        return
    (ingress,) = ingresses
    assert not any("snippet" in key for key in ingress["metadata"].get("annotations", {}))
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "local.gateway.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = rendering.find("Service", ingress["metadata"]["namespace"], backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_images_are_pinned_by_version(rendering):
    for where, spec in pod_specs(rendering):
        for c in containers(spec):
            image = c["image"]
            assert PINNED.match(image) and (":" in image.rsplit("/", 1)[-1] or "@" in image), \
                f"{where}: {image} is not pinned to a version"
            assert not image.endswith(":latest")
    tag = str(helm_values()["controller"]["image"]["tag"])
    assert re.match(r"^v?\d+(\.\d+)+", tag), tag


def test_pods_pass_the_restricted_pod_security_standard(rendering):
    for where, spec in pod_specs(rendering):
        pod = spec.get("securityContext") or {}
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        assert not any("hostPath" in v for v in spec.get("volumes") or []), where
        for c in containers(spec):
            security = c.get("securityContext") or {}
            assert security.get("allowPrivilegeEscalation") is False, (where, c["name"])
            assert security.get("capabilities", {}).get("drop") == ["ALL"], (where, c["name"])
            assert not security.get("privileged"), (where, c["name"])


def test_containers_have_requests_limits_and_probes(rendering):
    for where, spec in pod_specs(rendering):
        for c in containers(spec):
            resources = c.get("resources") or {}
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), (where, c["name"])
            assert "memory" in resources.get("limits", {}), (where, c["name"])
        for c in spec["containers"]:
            assert "readinessProbe" in c, (where, c["name"])
            if where != "the user pod template":
                assert "livenessProbe" in c, (where, c["name"])


def test_the_controller_deployment(rendering):
    controller = rendering.find("Deployment", "pod-router-system", "pod-router-controller")
    if rendering.overlay == "local":
        assert controller is None
        return
    assert controller["spec"]["replicas"] >= 2
    (c,) = controller["spec"]["template"]["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["securityContext"].get("readOnlyRootFilesystem") is True
    budget = rendering.find("PodDisruptionBudget", "pod-router-system", "pod-router-controller")
    assert budget["spec"]["minAvailable"] == 1
    # longer than the controller's own --shutdown-timeout (20s by default)
    assert controller["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 20


def test_stateful_services_keep_their_data(rendering):
    for name in ("redis", "rabbitmq"):
        statefulset = rendering.find("StatefulSet", "pod-router-system", name)
        if rendering.overlay == "local":
            assert statefulset is None
            continue
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        mounted = {m["name"] for c in statefulset["spec"]["template"]["spec"]["containers"]
                   for m in c["volumeMounts"]}
        assert claim["metadata"]["name"] in mounted
        storage_class = claim["spec"].get("storageClassName")
        if storage_class:
            assert rendering.find("StorageClass", "", storage_class), storage_class


def test_our_images_are_the_versions_this_tree_builds(rendering):
    """The tags CI gives the images (.github/workflows/ci.yml): the project's
    version, and for the ingress-nginx image also the ingress-nginx release
    its Dockerfile pins. A version bump that forgets the manifests fails."""
    version = re.search(r"project\(pod_router VERSION ([0-9.]+)",
                        (REPO / "CMakeLists.txt").read_text()).group(1)
    ingress = re.search(r"^ARG INGRESS_NGINX_VERSION=(\S+)$",
                        (REPO / "ngx_pod_router_module" / "Dockerfile").read_text(), re.M).group(1)
    assert str(helm_values()["controller"]["image"]["tag"]) == f"{version}-ingress-nginx-{ingress}"
    for where, spec in pod_specs(rendering):
        for c in containers(spec):
            if c["image"].startswith("ghcr.io/pod-router/"):
                assert c["image"].endswith(f":{version}"), (where, c["image"])
