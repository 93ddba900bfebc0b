"""Renders every overlay of manifests/ with `kubectl kustomize`, offline, as
an operator would: in a copy of the tree (so the real overlays' secrets/
folders are neither read nor written), after scripts/manifest-secrets.sh
made each overlay's credentials. The tests check the objects rendered."""

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir()
                  if (p / "kustomization.yaml").is_file())
# Namespaced kinds among those pod-router ships (a kind missing from both
# lists fails test_objects_have_what_they_need, so new kinds get sorted).
NAMESPACED = {"ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "StatefulSet",
              "PodDisruptionBudget", "Role", "RoleBinding", "NetworkPolicy", "Ingress"}
CLUSTER_SCOPED = {"Namespace", "StorageClass"}


def kustomize(directory):
    return subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60)


def secrets_dir_of(overlay_dir):
    """The secrets/ folder an overlay's Secrets come from: its own when it
    has a secretGenerator, else that of the overlay it builds on
    (local-node on plain-nginx)."""
    kustomization = yaml.safe_load((overlay_dir / "kustomization.yaml").read_text())
    if kustomization.get("secretGenerator"):
        return overlay_dir / "secrets"
    for resource in kustomization.get("resources", []):
        base = (overlay_dir / resource).resolve()
        if base.parent == overlay_dir.parent.resolve() and (base / "kustomization.yaml").is_file():
            return secrets_dir_of(base)
    return overlay_dir / "secrets"


def copy_manifests(destination):
    shutil.copytree(MANIFESTS, destination, ignore=shutil.ignore_patterns("secrets"))
    return destination


class Rendering:
    """One overlay's objects, with lookups by kind, namespace and name."""

    def __init__(self, overlay, objects, secrets_dir):
        self.overlay = overlay
        self.objects = objects
        self.secrets_dir = secrets_dir

    def of_kind(self, *kinds):
        return [o for o in self.objects if o["kind"] in kinds]

    def find(self, kind, namespace, name):
        for o in self.objects:
            meta = o["metadata"]
            if o["kind"] == kind and meta.get("namespace", "") == namespace and meta["name"] == name:
                return o
        return None

    def workloads(self):
        return self.of_kind("Deployment", "StatefulSet")

    def secret_values(self):
        """Every decoded value of every Secret rendered."""
        return {base64.b64decode(v).decode() for s in self.of_kind("Secret")
                for v in (s.get("data") or {}).values()}


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """A copy of manifests/ with every overlay's credentials made."""
    root = copy_manifests(tmp_path_factory.mktemp("manifests") / "manifests")
    for overlay in OVERLAYS:
        subprocess.run([str(REPO / "scripts" / "manifest-secrets.sh"), str(root / "overlays" / overlay)],
                       check=True, capture_output=True, timeout=30)
    return root


@pytest.fixture(scope="session")
def renderings(tree):
    result = {}
    for overlay in OVERLAYS:
        done = kustomize(tree / "overlays" / overlay)
        assert done.returncode == 0, f"kubectl kustomize overlays/{overlay}:\n{done.stderr}"
        objects = [o for o in yaml.safe_load_all(done.stdout) if o]
        result[overlay] = Rendering(overlay, objects, secrets_dir_of(tree / "overlays" / overlay))
    return result


@pytest.fixture(params=OVERLAYS)
def rendering(request, renderings):
    return renderings[request.param]


def pod_specs(rendering):
    """(where, pod spec) of every workload, and of the user pod template."""
    specs = [(f"{w['kind']}/{w['metadata']['name']}", w["spec"]["template"]["spec"])
             for w in rendering.workloads()]
    template = yaml.safe_load((MANIFESTS / "base" / "controller" / "pod-template.yaml").read_text())
    specs.append(("the user pod template", template["spec"]))
    return specs


def containers(spec):
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def referenced(spec):
    """(kind, name) of every ConfigMap and Secret a pod spec mounts."""
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        for source in (volume.get("projected") or {}).get("sources") or []:
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if key in source:
                    yield kind, source[key]["name"]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def helm_values():
    return yaml.safe_load((MANIFESTS / "gateway" / "ingress-nginx" / "helm-values.yaml").read_text())


# The labels ingress-nginx's Helm chart puts on its controller pods, plus
# the podLabels our values add: what the gateway pods look like there.
def ingress_nginx_pod_labels():
    return {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": "ingress-nginx",
            "app.kubernetes.io/component": "controller", **helm_values()["controller"]["podLabels"]}
