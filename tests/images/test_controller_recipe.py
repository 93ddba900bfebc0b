"""The controller image's recipe without a container engine: its builder
stage's build, from a context holding only what that stage COPYs, and its
runtime stage's package list against the libraries the binary loads."""

import re
from types import SimpleNamespace

import pytest

from conftest import (CONTROLLER_DOCKERFILE, REPO, apt_closure, assemble_context,
                      install_deps_list, library_packages, run)
from dockerfile import parse


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    work = tmp_path_factory.mktemp("controller-builder")
    context = assemble_context(parse(CONTROLLER_DOCKERFILE).stage("builder"), work / "src")
    run([context / "scripts" / "build.sh", "--target", "controller", "--build-dir", work / "build"],
        cwd=context, timeout=900)
    return SimpleNamespace(binary=work / "build" / "controller" / "pod-router-controller",
                           build=work / "build")


def test_only_the_controller_is_built(controller):
    cache = (controller.build / "CMakeCache.txt").read_text()
    assert "POD_ROUTER_TESTS:BOOL=OFF" in cache
    assert "POD_ROUTER_NGINX_MODULE:BOOL=OFF" in cache
    assert not (controller.build / "tests").exists()


def test_the_binary_runs_and_says_its_version(controller):
    version = re.search(r"project\(pod_router VERSION ([\d.]+)",
                        (REPO / "CMakeLists.txt").read_text()).group(1)
    assert run([controller.binary, "--version"]).stdout.strip() == f"pod-router-controller {version}"


def test_runtime_packages_cover_every_library_it_loads(controller):
    runtime = install_deps_list("--controller-runtime")
    libraries = library_packages(controller.binary)
    closure = apt_closure(runtime)
    missing = {lib: package for lib, package in libraries.items() if package not in closure}
    assert not missing, f"install-deps.sh --controller-runtime does not bring {missing}"
    # Each listed package is loaded directly or transitively, but for the CA bundle.
    assert set(runtime) - set(libraries.values()) == {"ca-certificates"}
