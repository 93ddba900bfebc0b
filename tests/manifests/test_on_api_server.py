"""The manifests against a real kube-apiserver (scripts/cluster.sh, no node):
every overlay through server-side validation and admission (PodSecurity
included) with --dry-run=server, the local overlay applied for real, the
user pod template under the `restricted` standard, and what each service
account may do asked of the real authorizer. Runs in the real-cluster tier
only (POD_ROUTER_CLUSTER=real); kube-sim has no admission or PodSecurity."""

import os
import re
import sys

import pytest
import yaml

from conftest import MANIFESTS, OVERLAYS, REPO

sys.path.insert(0, str(REPO / "tests" / "support"))

from servers import ON_REAL_CLUSTER, RealCluster  # noqa: E402

pytestmark = pytest.mark.skipif(not ON_REAL_CLUSTER, reason="real control plane tier only")

USERS_NS = "pod-router-users"
SYSTEM_NS = "pod-router-system"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    cluster = RealCluster(tmp_path_factory.mktemp("cluster"), f"127.250.{os.getpid() % 250}.0/24",
                          node=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def local_overlay(api):
    applied = api.kubectl("apply", "-k", str(MANIFESTS / "overlays" / "local"))
    assert applied.returncode == 0, applied.stderr
    return applied


def apply_namespaces(api, objects):
    """Namespaced objects are checked in their namespace, which must exist:
    the overlay's Namespace objects are applied for real first, and the
    namespaces it only refers to (ingress-nginx, which that Helm chart
    makes) are made as the operator's install would have."""
    shipped = [o for o in objects if o["kind"] == "Namespace"]
    names = {o["metadata"]["name"] for o in shipped}
    referred = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                for name in sorted({o["metadata"].get("namespace") for o in objects} - names - {None})]
    done = api.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(shipped + referred))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_passes_server_side_validation_and_admission(api, renderings, overlay):
    objects = renderings[overlay].objects
    apply_namespaces(api, objects)
    checked = api.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-",
                          stdin=yaml.safe_dump_all(objects))
    assert checked.returncode == 0, f"overlays/{overlay}:\n{checked.stderr}"
    # one line per object, each accepted by the server
    assert checked.stdout.count("(server dry run)") == len(objects), checked.stdout


def test_the_local_overlay_applies_for_real(api, local_overlay):
    listed = api.kubectl("get", "namespace", USERS_NS, "-o",
                         "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "restricted"


def user_pod(spec, name="template-check"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": USERS_NS}, "spec": spec}


def test_the_user_pod_template_is_admitted_under_restricted(api, local_overlay):
    template = yaml.safe_load((MANIFESTS / "base" / "controller" / "pod-template.yaml").read_text())
    created = api.kubectl("create", "--dry-run=server", "-f", "-",
                          stdin=yaml.safe_dump(user_pod(template["spec"])))
    assert created.returncode == 0, created.stderr
    assert "Warning" not in created.stderr, created.stderr


def test_a_pod_without_the_restricted_settings_is_refused_there(api, local_overlay):
    # The control for the test above: the namespace really enforces.
    spec = {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.28"}]}
    created = api.kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(user_pod(spec)))
    assert created.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in created.stderr, created.stderr


def permissions(api, account, namespace):
    """(resource, sorted verbs) the real authorizer grants the service
    account in the namespace, from `kubectl auth can-i --list`, less what
    every authenticated user may do (self-reviews, discovery URLs)."""
    kubeconfig = api.service_account_kubeconfig(SYSTEM_NS, account)
    listed = api.kubectl("auth", "can-i", "--list", "-n", namespace, kubeconfig=kubeconfig)
    assert listed.returncode == 0, listed.stderr
    granted = set()
    # A table (1.34 has no -o for --list): resource rows start in the first
    # column, non-resource URL rows with spaces.
    for line in listed.stdout.splitlines()[1:]:
        row = re.fullmatch(r"(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*", line)
        if row is None:
            assert line.startswith(" "), f"an unexpected line: {line!r}"
            continue
        resource, _urls, names, verbs = row.groups()
        if resource.startswith("self") and resource.endswith("reviews.authorization.k8s.io") or \
                resource == "selfsubjectreviews.authentication.k8s.io":
            continue  # system:basic-user, for every authenticated user
        granted.add((resource, tuple(sorted(verbs.split())), tuple(names.split())))
    return granted


def test_the_gateway_service_account_can_do_nothing(api, local_overlay):
    for namespace in (USERS_NS, SYSTEM_NS, "default", "kube-system"):
        assert permissions(api, "pod-router-gateway", namespace) == set(), namespace


def test_the_controller_can_do_exactly_what_docs_security_says(api, local_overlay):
    # docs/security.md: pods in pod-router-users (create, list, watch,
    # delete, and patch for the warm pool's claim label); its Lease in
    # pod-router-system; nothing else, nothing cluster-wide.
    assert permissions(api, "pod-router-controller", USERS_NS) == {
        ("pods", ("create", "delete", "list", "patch", "watch"), ())}
    assert permissions(api, "pod-router-controller", SYSTEM_NS) == {
        ("leases.coordination.k8s.io", ("create", "get", "update"), ())}
    for namespace in ("default", "kube-system"):
        assert permissions(api, "pod-router-controller", namespace) == set(), namespace
    secret = api.kubectl("auth", "can-i", "get", "secrets", "-n", SYSTEM_NS,
                         kubeconfig=api.service_account_kubeconfig(SYSTEM_NS, "pod-router-controller"))
    assert secret.stdout.strip() == "no"
