"""Every overlay renders offline; credentials never come from the
repository."""

import base64
import copy
import re
import subprocess

import yaml

from conftest import MANIFESTS, OVERLAYS, REPO, copy_manifests, kustomize


def test_the_expected_overlays_exist():
    assert set(OVERLAYS) >= {"local", "minikube", "eks", "plain-nginx"}


def test_every_overlay_renders(renderings):
    for overlay in OVERLAYS:
        assert renderings[overlay].objects, overlay


def test_without_its_credentials_an_overlay_says_which_file_is_missing(tmp_path):
    root = copy_manifests(tmp_path / "manifests")
    done = kustomize(root / "overlays" / "minikube")
    assert done.returncode != 0
    assert "secrets/redis-password" in done.stderr or "secrets/amqp-credentials" in done.stderr


def test_the_secrets_script_never_overwrites(tmp_path):
    root = copy_manifests(tmp_path / "manifests")
    overlay = root / "overlays" / "eks"
    script = REPO / "scripts" / "manifest-secrets.sh"
    subprocess.run([str(script), str(overlay)], check=True, capture_output=True, timeout=30)
    first = (overlay / "secrets" / "redis-password").read_text()
    assert len(first.strip()) == 64 and (overlay / "secrets").stat().st_mode & 0o077 == 0
    (overlay / "secrets" / "amqp-credentials").write_text("mine:from-the-vault\n")
    again = subprocess.run([str(script), str(overlay)], check=True, capture_output=True, text=True,
                           timeout=30)
    assert "kept" in again.stdout
    assert (overlay / "secrets" / "redis-password").read_text() == first
    assert (overlay / "secrets" / "amqp-credentials").read_text() == "mine:from-the-vault\n"
    assert subprocess.run([str(script), str(tmp_path)], capture_output=True,
                          timeout=30).returncode == 2


def committed_manifests():
    listed = subprocess.run(["git", "ls-files", "manifests"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    return [REPO / path for path in listed]


def test_no_committed_file_holds_a_secret():
    for path in committed_manifests():
        if path.suffix not in (".yaml", ".yml"):
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict):
                continue
            assert document.get("kind") != "Secret", path
            for generator in document.get("secretGenerator") or []:
                # files only: literals and env files would put values in git
                assert set(generator) <= {"name", "namespace", "files", "options", "type",
                                          "behavior"}, (path, generator)
                for source in generator["files"]:
                    relative = source.split("=", 1)[-1]
                    assert relative.startswith("secrets/"), (path, source)
                    ignored = subprocess.run(
                        ["git", "check-ignore", "-q", str(path.parent / relative)], cwd=REPO)
                    assert ignored.returncode == 0, f"{path.parent / relative} is not git-ignored"


def test_rendered_secrets_hold_the_overlays_files_and_appear_nowhere_else(rendering):
    secrets = rendering.of_kind("Secret")
    if rendering.overlay == "local":
        assert secrets == []
        return
    files = {p.name: p.read_text() for p in rendering.secrets_dir.iterdir()}
    assert secrets
    for secret in secrets:
        for value in secret["data"].values():
            assert base64.b64decode(value).decode() in files.values()
    # no credential leaks into a ConfigMap, an argument or an env value
    others = yaml.safe_dump_all([o for o in rendering.objects if o["kind"] != "Secret"])
    for value in rendering.secret_values():
        assert value.strip().split(":")[-1] not in others


def test_local_is_what_the_stack_applies():
    stack = (REPO / "scripts" / "stack.sh").read_text()
    assert 'apply -k "$repo/manifests/overlays/local"' in stack
    # and kube-sim serves every kind in it
    rendered = kustomize(MANIFESTS / "overlays" / "local")
    kinds = {o["kind"] for o in yaml.safe_load_all(rendered.stdout) if o}
    assert kinds <= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret"}


def test_local_node_is_plain_nginx_with_the_images_built_here(renderings):
    """The real node runs what plain-nginx ships: the overlay changes the
    images (scripts/images/build.sh makes them), the user pod template's
    image, and the gateway Service's type, and nothing else."""
    plain, node = renderings["plain-nginx"], renderings["local-node"]
    template_key = "pod-template.yaml"

    def template(rendering):
        maps = [m for m in rendering.of_kind("ConfigMap") if template_key in m.get("data", {})]
        assert len(maps) == 1, rendering.overlay
        return maps[0]

    plain_pod = yaml.safe_load(template(plain)["data"][template_key])
    node_pod = yaml.safe_load(template(node)["data"][template_key])
    assert node_pod["spec"]["containers"][0]["image"].startswith("localhost/pod-router/demo:")
    node_pod["spec"]["containers"][0]["image"] = plain_pod["spec"]["containers"][0]["image"]
    assert node_pod == plain_pod

    def normalised(rendering):
        objects = copy.deepcopy(rendering.objects)
        for o in objects:
            if o["kind"] == "ConfigMap" and template_key in o.get("data", {}):
                o["data"][template_key] = "compared above"
        text = yaml.safe_dump_all(objects, sort_keys=True)
        # generated names carry a hash of their content
        for generated in rendering.of_kind("ConfigMap", "Secret"):
            name = generated["metadata"]["name"]
            text = text.replace(name, re.sub(r"-[a-z0-9]{10}$", "", name))
        return text

    plain_text, node_text = normalised(plain), normalised(node)
    local_images = set(re.findall(r"image: (localhost/pod-router/\S+)", node_text))
    assert {i.split(":")[0].rsplit("/", 1)[-1] for i in local_images} == {
        "pod-router-controller", "pod-router-nginx", "redis", "rabbitmq"}
    assert "ghcr.io/" not in node_text and "docker.io/" not in node_text
    images = iter(re.findall(r"image: (\S+)", plain_text))
    node_text = re.sub(r"image: \S+", lambda _: f"image: {next(images)}", node_text)
    node_text = node_text.replace("  - name: http\n    nodePort: 30080\n", "  - name: http\n")
    node_text = node_text.replace("type: NodePort", "type: LoadBalancer")
    assert node_text == plain_text
