"""RBAC from real Role/RoleBinding/ClusterRole/ClusterRoleBinding manifests,
applied with kubectl: allowed requests pass, others get kube-apiserver's 403."""

import json

import pytest

from cluster import pod_manifest

RBAC = """
apiVersion: v1
kind: Namespace
metadata: {name: rbac-users}
---
apiVersion: v1
kind: Namespace
metadata: {name: pod-router-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-manager, namespace: rbac-users}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [create, get, list, watch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: controller-pods, namespace: rbac-users}
subjects:
- kind: ServiceAccount
  name: pod-router-controller
  namespace: pod-router-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-manager}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: lease-reader}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get]
  resourceNames: [pod-router-controller]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: controller-leases}
subjects:
- kind: Group
  name: system:serviceaccounts:pod-router-system
  apiGroup: rbac.authorization.k8s.io
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lease-reader}
"""

CONTROLLER = "system:serviceaccount:pod-router-system:pod-router-controller"


@pytest.fixture(scope="module")
def rbac(cluster):
    cluster.kubectl("apply", "-f", "-", input=RBAC)
    yield cluster.kubeconfig_for("pod-router-system", "pod-router-controller")
    cluster.kubectl("delete", "namespace", "rbac-users", "--wait=false", check=False)


def test_allowed_by_the_role_binding(cluster, rbac):
    pod = json.dumps(pod_manifest("by-controller", probe=False))
    created = cluster.kubectl("create", "-n", "rbac-users", "-f", "-", "--validate=false", input=pod,
                              kubeconfig=rbac)
    assert "pod/by-controller created" in created.stdout
    listed = cluster.kubectl("get", "pods", "-n", "rbac-users", "-o", "name", kubeconfig=rbac)
    assert "pod/by-controller" in listed.stdout
    cluster.kubectl("delete", "pod", "by-controller", "-n", "rbac-users", "--wait=false", kubeconfig=rbac)


def test_denied_outside_the_roles_namespace_and_verbs(cluster, rbac):
    token = cluster.token_for("pod-router-system", "pod-router-controller")
    status, body = cluster.request("GET", "/api/v1/namespaces/default/pods", token=token)
    assert status == 403
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert body["message"] == (f'pods is forbidden: User "{CONTROLLER}" cannot list resource "pods" '
                               'in API group "" in the namespace "default"')
    assert body["details"] == {"kind": "pods"}

    status, body = cluster.request("GET", "/api/v1/namespaces/rbac-users/secrets/anything", token=token)
    assert status == 403
    assert body["message"] == (f'secrets "anything" is forbidden: User "{CONTROLLER}" cannot get resource '
                               '"secrets" in API group "" in the namespace "rbac-users"')

    status, body = cluster.request("PATCH", "/api/v1/namespaces/rbac-users/pods/x", {"metadata": {}},
                                   token=token, content_type="application/merge-patch+json")
    assert status == 403 and "cannot patch resource" in body["message"]

    status, body = cluster.request("GET", "/api/v1/pods", token=token)
    assert status == 403 and body["message"].endswith("at the cluster scope")


def test_cluster_role_binding_to_a_group_and_resource_names(cluster, rbac):
    cluster.request("POST", "/apis/coordination.k8s.io/v1/namespaces/pod-router-system/leases",
                    {"metadata": {"name": "pod-router-controller"}, "spec": {}})
    cluster.request("POST", "/apis/coordination.k8s.io/v1/namespaces/pod-router-system/leases",
                    {"metadata": {"name": "someone-else"}, "spec": {}})
    # The gateway's account is in the same namespace, so the group binding covers it too.
    token = cluster.token_for("pod-router-system", "pod-router-gateway")
    status, _ = cluster.request(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/pod-router-system/leases/pod-router-controller", token=token)
    assert status == 200
    status, body = cluster.request(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/pod-router-system/leases/someone-else", token=token)
    assert status == 403
    assert body["message"].startswith('leases.coordination.k8s.io "someone-else" is forbidden')
    assert 'in API group "coordination.k8s.io"' in body["message"]
    status, _ = cluster.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/pod-router-system/leases/"
                                "pod-router-controller", {"metadata": {"name": "pod-router-controller"}}, token=token)
    assert status == 403


def test_kubectl_reports_forbidden(cluster, rbac):
    result = cluster.kubectl("get", "secrets", "-n", "rbac-users", kubeconfig=rbac, check=False)
    assert result.returncode != 0
    assert f'secrets is forbidden: User "{CONTROLLER}" cannot list resource "secrets"' in result.stderr


def test_the_audit_log_records_each_decision(cluster, rbac):
    cluster.kubectl("get", "secrets", "-n", "rbac-users", kubeconfig=rbac, check=False)
    cluster.kubectl("get", "pods", "-n", "rbac-users", kubeconfig=rbac)
    entries = [json.loads(line) for line in cluster.audit_path.read_text().splitlines()]
    mine = [(e["verb"], e["group"], e["resource"], e["namespace"], e["allowed"])
            for e in entries if e["user"] == CONTROLLER]
    assert ("list", "", "secrets", "rbac-users", False) in mine
    assert ("list", "", "pods", "rbac-users", True) in mine
    # the admin's requests too; discovery (no resource) is not recorded
    assert any(e["user"] == "kube-sim-admin" and e["allowed"] for e in entries)
    assert all(e["resource"] for e in entries)
