"""The Dockerfiles, read without a container engine: every base image
pinned, the final images non-root, and the builders running the scripts
that make and these tests run, rather than a copy of the recipe."""

import re

import pytest

from conftest import MODULE_DOCKERFILE, CONTROLLER_DOCKERFILE, REPO, ignored
from dockerfile import parse

DOCKERFILES = [MODULE_DOCKERFILE, CONTROLLER_DOCKERFILE]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")

# What each stage must run: the shared scripts, with the options that make
# them the image's recipe. Inlining a step instead breaks this test.
SCRIPT_CALLS = {
    MODULE_DOCKERFILE: {
        "gateway-builder": [r"scripts/install-deps\.sh --module-build\b",
                            r"scripts/build\.sh --target module\b"],
        "gateway-nginx": [r"/install-deps\.sh --gateway-runtime\b",
                          r"/check-module-loads\.sh --nginx /usr/sbin/nginx\b"],
        "ingress-builder": [r"scripts/nginx-conf-flags\.sh --nginx /usr/local/nginx/sbin/nginx\b",
                            r"scripts/prepare-nginx-src\.sh --tarball .* --sha256 .*"
                            r"--patches \S*/images/nginx/rootfs/patches\b",
                            r"NGINX_SRC=\S+ scripts/build\.sh --target module\b"],
        "ingress-nginx": [r"/check-module-loads\.sh --nginx /usr/local/nginx/sbin/nginx\b"],
    },
    CONTROLLER_DOCKERFILE: {
        "builder": [r"scripts/install-deps\.sh --controller-build\b",
                    r"scripts/build\.sh --target controller\b"],
        "controller": [r"/install-deps\.sh --controller-runtime\b"],
    },
}
# Programs that belong in those scripts, not in a RUN line.
INLINED = {"cmake", "make", "./configure", "configure", "apt-get", "apt", "dpkg", "patch"}


def stages_by_name(path):
    return {stage.name: stage for stage in parse(path).stages}


def programs(command):
    """The program each simple command of a shell line runs."""
    for simple in re.split(r"&&|\|\||;|\|", command):
        words = [w for w in simple.split() if not re.match(r"\w+=", w)]
        if words:
            yield words[0]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_base_image_is_pinned_by_tag_and_digest(path):
    dockerfile = parse(path)
    earlier = set()
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        if base not in earlier:
            name, _, digest = base.partition("@")
            assert ":" in name.rsplit("/", 1)[-1], f"{stage.name}: {base} has no tag"
            assert not name.endswith(":latest"), f"{stage.name}: {base}"
            assert DIGEST.search(base), f"{stage.name}: {base} is not pinned by digest"
        earlier.add(stage.name)


@pytest.mark.parametrize("path, stage", [
    (MODULE_DOCKERFILE, "gateway-nginx"),
    (MODULE_DOCKERFILE, "ingress-nginx"),
    (CONTROLLER_DOCKERFILE, "controller"),
], ids=["gateway-nginx", "ingress-nginx", "controller"])
def test_final_images_run_as_a_non_root_user(path, stage):
    user = parse(path).stage(stage).user()
    assert user, f"{stage} sets no USER: it would run as root"
    assert user.split(":")[0] not in ("root", "0"), f"{stage}: USER {user}"


def test_the_ingress_nginx_image_is_the_default_target(module_dockerfile):
    names = [stage.name for stage in module_dockerfile.stages]
    assert names[-1] == "ingress-nginx"
    assert "gateway-nginx" in names


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_builders_run_the_shared_scripts(path):
    stages = stages_by_name(path)
    for name, calls in SCRIPT_CALLS[path].items():
        commands = "\n".join(stages[name].run_commands())
        for call in calls:
            assert re.search(call, commands), f"{name} does not run {call}:\n{commands}"
    for stage in stages.values():
        for command in stage.run_commands():
            assert not INLINED & set(programs(command)), (
                f"{stage.name} runs a build or package step itself instead of "
                f"scripts/build.sh or scripts/install-deps.sh: {command}")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_what_the_images_copy_is_in_the_build_context(path):
    for stage in parse(path).stages:
        sources = stage.mounted_sources()
        for copy in stage.all("COPY"):
            flags, words = copy.flags_and_words()
            if "from" not in flags:
                sources += words[:-1]
        for source in sources:
            assert (REPO / source).exists(), f"{stage.name} copies a missing {source}"
            assert not ignored(source), f"{stage.name} copies {source}, which .dockerignore excludes"


def test_dockerignore_keeps_outputs_and_local_state_out():
    for path in ["build/ngx_http_pod_router_module.so", "build-asan/x", ".run/logs/nginx.log",
                 ".git/HEAD", "common/src/__pycache__/x.pyc", "tests/images/conftest.py"]:
        assert ignored(path), path
    for path in ["CMakeLists.txt", "common/src/pod_name.cpp", "scripts/build.sh",
                 "ngx_pod_router_module/config", "controller/src/main.cpp"]:
        assert not ignored(path), path


def test_ingress_nginx_versions_agree(module_dockerfile):
    args = module_dockerfile.args
    version = args["INGRESS_NGINX_VERSION"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", version)
    assert args["INGRESS_NGINX_IMAGE"].startswith(f"registry.k8s.io/ingress-nginx/controller:{version}@")
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["NGINX_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", args["NGINX_SHA256"])
    # The builder fetches the patches of that same release.
    builder = "\n".join(module_dockerfile.stage("ingress-builder").run_commands())
    assert '--branch "controller-${INGRESS_NGINX_VERSION}"' in builder
    assert "nginx-${NGINX_VERSION}.tar.gz" in builder
    assert '--expect-version "${NGINX_VERSION}"' in builder


def test_gateway_images_install_the_module_where_nginx_looks(module_dockerfile):
    ingress = module_dockerfile.stage("ingress-nginx")
    assert any(c.text.endswith(" /etc/nginx/modules/") for c in ingress.all("COPY"))
    assert ingress.user() == "www-data"
    gateway = module_dockerfile.stage("gateway-nginx")
    assert any(c.text.endswith(" /usr/lib/nginx/modules/") for c in gateway.all("COPY"))
    assert gateway.user() == "101:101"
    assert gateway.all("ENTRYPOINT")[-1].exec_form() == ["nginx"]
    assert gateway.all("CMD")[-1].exec_form() == [
        "-c", "/etc/pod-router/nginx.conf", "-g", "daemon off;"]
    # the ports manifests/gateway/config/gateway.conf listens on
    assert [e.text for e in gateway.all("EXPOSE")] == ["8090 9091"]


def test_controller_image_runs_the_controller(controller_dockerfile):
    final = controller_dockerfile.stages[-1]
    assert final.user() == "65532:65532"
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["/usr/local/bin/pod-router-controller"]
    assert final.all("CMD")[-1].exec_form() == ["run"]
    assert [e.text for e in final.all("EXPOSE")] == ["8081"]
    assert "POD_ROUTER_POD_TEMPLATE=/etc/pod-router/pod-template.yaml" in [
        e.text for e in final.all("ENV")]
