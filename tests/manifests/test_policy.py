"""Who may do what: the controller's RBAC, exactly; no API access for
anyone else; NetworkPolicies that keep the user pods apart from everything
but the gateways."""

import ipaddress
import re

import yaml

from conftest import (MANIFESTS, REPO, helm_values, ingress_nginx_pod_labels, labels_match, pod_specs,
                      referenced)

CONTROLLER = ("pod-router-system", "pod-router-controller")
GATEWAY_NAMESPACES = {"pod-router-system", "ingress-nginx"}


def grants(rendering, namespace, account):
    """(group, resource, verb, namespace) granted to one service account."""
    granted = set()
    for binding in rendering.of_kind("RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and (s["namespace"], s["name"]) == (namespace, account)
                   for s in binding["subjects"]):
            continue
        where = binding["metadata"]["namespace"]
        assert binding["roleRef"]["kind"] == "Role"
        role = rendering.find("Role", where, binding["roleRef"]["name"])
        assert role is not None, binding
        for rule in role["rules"]:
            assert not rule.get("resourceNames") and "*" not in rule["verbs"] + rule["resources"]
            granted |= {(g, r, v, where) for g in rule["apiGroups"] for r in rule["resources"]
                        for v in rule["verbs"]}
    return granted


def test_the_controller_gets_exactly_what_it_uses(rendering):
    # What the controller's code sends (controller/src/kube/pod_api.cpp,
    # leader/lease_elector.cpp); the end-to-end suite checks the same set
    # against kube-sim's audit log of a running stack.
    assert grants(rendering, *CONTROLLER) == {
        ("", "pods", "create", "pod-router-users"),
        ("", "pods", "list", "pod-router-users"),
        ("", "pods", "watch", "pod-router-users"),
        ("", "pods", "delete", "pod-router-users"),
        ("", "pods", "patch", "pod-router-users"),
        ("coordination.k8s.io", "leases", "get", "pod-router-system"),
        ("coordination.k8s.io", "leases", "create", "pod-router-system"),
        ("coordination.k8s.io", "leases", "update", "pod-router-system"),
    }


def test_nothing_is_granted_cluster_wide_nor_to_anyone_else(rendering):
    assert rendering.of_kind("ClusterRole", "ClusterRoleBinding") == []
    for binding in rendering.of_kind("RoleBinding"):
        assert [(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]] == \
            [("ServiceAccount", *CONTROLLER)], binding["metadata"]["name"]
    assert grants(rendering, "pod-router-system", "pod-router-gateway") == set()


def test_only_the_controller_mounts_an_api_token(rendering):
    accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]): a
                for a in rendering.of_kind("ServiceAccount")}
    for w in rendering.workloads():
        spec = w["spec"]["template"]["spec"]
        account = accounts.get((w["metadata"]["namespace"], spec.get("serviceAccountName", "default")))
        automount = spec.get("automountServiceAccountToken",
                             (account or {}).get("automountServiceAccountToken", True))
        assert automount == (w["metadata"]["name"] == "pod-router-controller"), w["metadata"]["name"]
    template = yaml.safe_load((MANIFESTS / "base" / "controller" / "pod-template.yaml").read_text())
    assert template["spec"]["automountServiceAccountToken"] is False


def user_pod_labels():
    """The labels of a pod the controller creates: the template's, plus the
    managed-by label the controller adds (read from its source)."""
    source = (REPO / "controller" / "src" / "pod_template.hpp").read_text()
    key = re.search(r'kManagedByLabel = "([^"]+)"', source).group(1)
    value = re.search(r'kManagedByValue = "([^"]+)"', source).group(1)
    template = yaml.safe_load((MANIFESTS / "base" / "controller" / "pod-template.yaml").read_text())
    return {**template["metadata"]["labels"], key: value}, template["spec"]


def selects_namespace(peer, namespace):
    selector = peer.get("namespaceSelector")
    if selector is None:
        return None  # the policy's own namespace
    labels = {"kubernetes.io/metadata.name": namespace}
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def peer_admits(peer, policy_namespace, namespace, labels):
    """Whether a NetworkPolicy peer admits a pod (namespace, labels)."""
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is judged by selectors here
    in_namespace = selects_namespace(peer, namespace)
    if in_namespace is None:
        in_namespace = namespace == policy_namespace
    return in_namespace and labels_match(peer.get("podSelector", {}).get("matchLabels", {}), labels)


def policies_for(rendering, namespace, labels):
    return [p for p in rendering.of_kind("NetworkPolicy") if p["metadata"]["namespace"] == namespace
            and labels_match(p["spec"]["podSelector"].get("matchLabels", {}), labels)]


def test_user_pods_accept_only_the_gateways_on_the_pod_port(rendering):
    if rendering.overlay == "local":
        return
    labels, spec = user_pod_labels()
    port = spec["containers"][0]["ports"][0]["containerPort"]
    policies = policies_for(rendering, "pod-router-users", labels)
    assert {"user-pods", "default-deny"} <= {p["metadata"]["name"] for p in policies}
    gateways = [("pod-router-system", {"pod-router.io/gateway": "true", "app.kubernetes.io/name": "x"}),
                ("ingress-nginx", ingress_nginx_pod_labels())]
    others = [("pod-router-users", labels),
              ("pod-router-system", {"app.kubernetes.io/name": "redis"}),
              ("pod-router-system", {"app.kubernetes.io/name": "pod-router-controller"}),
              ("default", {"pod-router.io/gateway": "true"})]
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"] and "Egress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert [p["port"] for p in rule["ports"]] == [port]
            for namespace, pod in gateways:
                assert any(peer_admits(p, "pod-router-users", namespace, pod) for p in rule["from"])
            for namespace, pod in others:
                assert not any(peer_admits(p, "pod-router-users", namespace, pod) for p in rule["from"]), \
                    (namespace, pod)


def test_every_gateway_pod_carries_the_gateway_label(rendering):
    assert helm_values()["controller"]["podLabels"]["pod-router.io/gateway"] == "true"
    for w in rendering.workloads():
        labels = w["spec"]["template"]["metadata"]["labels"]
        # a gateway is whatever mounts the gateway's nginx configuration
        is_gateway = ("ConfigMap", "pod-router-gateway") in set(referenced(w["spec"]["template"]["spec"]))
        assert (labels.get("pod-router.io/gateway") == "true") == is_gateway, w["metadata"]["name"]
        if is_gateway:
            assert w["metadata"]["namespace"] in GATEWAY_NAMESPACES


PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                             "169.254.0.0/16", "100.64.0.0/10")]


def test_user_pods_reach_no_cluster_address_but_dns(rendering):
    if rendering.overlay == "local":
        return
    labels, _ = user_pod_labels()
    for policy in policies_for(rendering, "pod-router-users", labels):
        for rule in policy["spec"].get("egress", []):
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    excepted = [ipaddress.ip_network(n) for n in peer["ipBlock"].get("except", [])]
                    for network in PRIVATE:
                        assert any(network.subnet_of(e) for e in excepted), network
                else:
                    # DNS only: kube-dns in kube-system, port 53
                    assert selects_namespace(peer, "kube-system") is True
                    assert not selects_namespace(peer, "pod-router-system")
                    assert {p["port"] for p in rule["ports"]} == {53}


def test_redis_and_rabbitmq_admit_only_gateways_and_controllers(rendering):
    if rendering.overlay == "local":
        return
    labels, _ = user_pod_labels()
    for name, port in (("redis", 6379), ("rabbitmq", 5672)):
        policies = policies_for(rendering, "pod-router-system", {"app.kubernetes.io/name": name})
        assert {p["metadata"]["name"] for p in policies} == {"default-deny-ingress", name}
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == [port]
                admitted = lambda ns, pod: any(peer_admits(p, "pod-router-system", ns, pod)  # noqa: E731
                                               for p in rule["from"])
                assert admitted("pod-router-system", {"app.kubernetes.io/name": "pod-router-controller"})
                assert admitted("ingress-nginx", ingress_nginx_pod_labels())
                assert not admitted("pod-router-users", labels)
                assert not admitted("pod-router-users", {"pod-router.io/gateway": "true"})
                assert not admitted("pod-router-system", {"app.kubernetes.io/name": "something"})


def test_namespaces_enforce_the_restricted_standard(rendering):
    for namespace in rendering.of_kind("Namespace"):
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert pod_specs(rendering)
