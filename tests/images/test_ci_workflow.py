"""The CI workflow: make test as .ci/run runs it, make test-asan in the same
container, and a build of every image the Dockerfiles define, pushed from
main only."""

import re

import pytest
import yaml

from conftest import REPO
from dockerfile import parse

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def steps_running(job, text):
    return [s for s in job["steps"] if text in s.get("run", "")]


def test_the_test_job_runs_make_test_on_pinned_debian(workflow):
    job = workflow["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    assert job["timeout-minutes"] == 30
    assert re.fullmatch(r"debian:bookworm-\d{8}@sha256:[0-9a-f]{64}", job["container"]["image"])
    assert [s["run"].strip() for s in steps_running(job, ".ci/run")] == [".ci/run"]


def test_the_asan_job_runs_make_test_asan_in_the_same_container(workflow):
    test, asan = workflow["jobs"]["test"], workflow["jobs"]["asan"]
    assert asan["runs-on"] == "ubuntu-latest"
    assert asan["timeout-minutes"] == 40
    assert asan["container"]["image"] == test["container"]["image"]
    assert asan["env"] == test["env"]
    (deps,) = steps_running(asan, "scripts/install-deps.sh")
    assert deps["run"].strip() == "scripts/install-deps.sh"
    (run,) = steps_running(asan, "make test-asan")
    assert run["run"].strip() == "make test-asan"
    # The dependencies, as .ci/run installs them for make test, come first.
    order = [s.get("run", "") for s in asan["steps"]]
    assert order.index(deps["run"]) < order.index(run["run"])
    # git before the checkout (make lists the sources with it), as in test.
    names = [s.get("uses", s.get("name")) for s in asan["steps"]]
    assert names.index("git and curl") < names.index("actions/checkout@v6")


@pytest.mark.parametrize("name, command", [("test", ".ci/run"), ("asan", "make test-asan")])
def test_kubectl_is_pinned_and_checksummed(workflow, name, command):
    job = workflow["jobs"][name]
    assert re.fullmatch(r"v1\.32\.\d+", job["env"]["KUBECTL_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", job["env"]["KUBECTL_SHA256"])
    (step,) = steps_running(job, "dl.k8s.io")
    assert 'echo "${KUBECTL_SHA256}  /tmp/kubectl" | sha256sum --check' in step["run"]
    # Installed before the tests need it.
    order = [s.get("run", "").strip() for s in job["steps"]]
    assert order.index(step["run"].strip()) < order.index(command)


def test_every_image_target_is_built(workflow):
    job = workflow["jobs"]["images"]
    built = {(entry["file"], entry["target"]) for entry in job["strategy"]["matrix"]["include"]}
    assert built == {
        ("controller/Dockerfile", "controller"),
        ("ngx_pod_router_module/Dockerfile", "gateway-nginx"),
        ("ngx_pod_router_module/Dockerfile", "ingress-nginx"),
    }
    for file, target in built:
        assert parse(REPO / file).stage(target)
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert build["with"]["context"] == "."
    assert build["with"]["file"] == "${{ matrix.file }}"
    assert build["with"]["target"] == "${{ matrix.target }}"


def test_images_are_pushed_from_main_only(workflow):
    job = workflow["jobs"]["images"]
    assert job["permissions"]["packages"] == "write"
    assert workflow["permissions"] == {"contents": "read"}
    assert job["env"]["PUSH"] == "${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}"
    (build,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert build["with"]["push"] == "${{ env.PUSH == 'true' }}"
    (login,) = [s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@")]
    assert login["if"] == "env.PUSH == 'true'"


def test_actions_are_pinned_to_a_major_version_at_least(workflow):
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", step["uses"]), (
                    f"{name}: {step['uses']}")
