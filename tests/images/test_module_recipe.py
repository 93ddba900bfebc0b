"""The gateway images' recipe, run here against Debian's nginx, since no
container engine runs the Dockerfiles in CI: the ingress-nginx builder's
steps (flags from the target binary's nginx -V, a checksummed release
tarball, patches, scripts/build.sh --target module) and the gateway-nginx
builder's (make's own recipe), each from a build context holding only what
the stage COPYs, and then the target nginx loading the result."""

import difflib
import hashlib
import os
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import (MODULE_DOCKERFILE, NGINX, REPO, apt_closure, assemble_context,
                      bash_array, install_deps_list, library_packages, run)
from dockerfile import parse

DEBIAN_SRC = Path("/usr/share/nginx/src")
MODULE = "ngx_http_pod_router_module.so"
# The final stages bind-mount it from the build context.
CHECK = REPO / "scripts" / "check-module-loads.sh"
# Stand-ins for ingress-nginx's patches, one of each kind its build applies.
PATCHED = {
    "01_pod_router_test.patch": ("src/core/nginx.h", "#define POD_ROUTER_TEST_P1 1\n", "a/", "b/"),
    "02_pod_router_test.txt": ("src/core/ngx_config.h", "#define POD_ROUTER_TEST_P0 1\n", "", ""),
}


def nginx_version():
    return run([NGINX, "-v"]).stderr.strip().rsplit("/", 1)[1]


def failing(command, **options):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=600, **options)
    assert result.returncode != 0, f"{command} succeeded:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Debian's nginx source as nginx.org ships a release: nginx-X.Y.Z.tar.gz
    with one top folder, and no conf_flags."""
    folder = tmp_path_factory.mktemp("release")
    version = nginx_version()
    tarball = folder / f"nginx-{version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(DEBIAN_SRC, arcname=f"nginx-{version}",
                    filter=lambda info: None if info.name.endswith("/conf_flags") else info)
    patches = folder / "patches"
    patches.mkdir()
    for name, (path, line, old, new) in PATCHED.items():
        original = (DEBIAN_SRC / path).read_text().splitlines(keepends=True)
        diff = difflib.unified_diff(original, original + [line], old + path, new + path)
        (patches / name).write_text("".join(diff))
    return SimpleNamespace(version=version, tarball=tarball, patches=patches,
                           sha256=hashlib.sha256(tarball.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def ingress_recipe(tmp_path_factory, release):
    """The ingress-builder stage's RUN, step by step, from its own context."""
    work = tmp_path_factory.mktemp("ingress-builder")
    context = assemble_context(parse(MODULE_DOCKERFILE).stage("ingress-builder"), work / "src")
    scripts = context / "scripts"
    run([scripts / "nginx-conf-flags.sh", "--nginx", NGINX, "--expect-version", release.version,
         "--output", work / "conf_flags"])
    run([scripts / "prepare-nginx-src.sh", "--tarball", release.tarball, "--sha256", release.sha256,
         "--patches", release.patches, "--conf-flags", work / "conf_flags",
         "--dest", work / "nginx-src"])
    run([scripts / "build.sh", "--target", "module", "--build-dir", work / "build"],
        cwd=context, env={**os.environ, "NGINX_SRC": str(work / "nginx-src")})
    return SimpleNamespace(work=work, context=context, scripts=scripts,
                           conf_flags=work / "conf_flags", build=work / "build")


def test_flags_come_from_the_binary_less_its_third_party_modules(ingress_recipe):
    flags = bash_array(ingress_recipe.conf_flags)
    assert "--with-compat" in flags and "--with-threads" in flags
    assert not [f for f in flags if f.startswith(("--add-module", "--add-dynamic-module"))
                or f.endswith("=dynamic")]
    # Everything Debian itself builds modules with, and more (its cc/ld options).
    assert set(bash_array(DEBIAN_SRC / "conf_flags")) <= set(flags)
    assert any(f.startswith("--with-cc-opt=") for f in flags)


def test_the_module_is_built_in_the_patched_tree(ingress_recipe):
    tree = ingress_recipe.build / "nginx" / "src"
    for path, line, _, _ in PATCHED.values():
        assert line in (tree / path).read_text(), path
    configure = (ingress_recipe.build / "nginx" / "configure.stamp").read_text()
    assert "--with-cc-opt=" in configure  # the derived flags, not Debian's own conf_flags


def test_nginx_loads_the_module_the_recipe_built(ingress_recipe):
    result = run([CHECK, "--nginx", NGINX,
                  "--module", ingress_recipe.build / MODULE])
    assert f"loads {MODULE}" in result.stdout


def test_a_module_built_with_other_flags_is_refused(ingress_recipe, tmp_path):
    """The load check can fail: a tree configured without --with-compat
    gives a module nginx refuses, though it compiles."""
    flags = [f for f in bash_array(ingress_recipe.conf_flags) if f != "--with-compat"]
    (tmp_path / "conf_flags").write_text(
        "NGX_CONF_FLAGS=(" + " ".join(f"'{f}'" for f in flags) + ")\n")
    run([ingress_recipe.scripts / "prepare-nginx-src.sh", "--source", ingress_recipe.work / "nginx-src",
         "--conf-flags", tmp_path / "conf_flags", "--dest", tmp_path / "nginx-src"])
    run([ingress_recipe.scripts / "build-module.sh",
         "--module-dir", ingress_recipe.context / "ngx_pod_router_module",
         "--core-lib", ingress_recipe.build / "common" / "libpod_router_core.a",
         "--work-dir", tmp_path / "nginx", "--output", tmp_path / MODULE],
        env={**os.environ, "NGINX_SRC": str(tmp_path / "nginx-src")})
    output = failing([CHECK, "--nginx", NGINX, "--module", tmp_path / MODULE])
    assert "is not binary compatible" in output


def test_a_tarball_with_another_checksum_is_refused(ingress_recipe, release, tmp_path):
    output = failing([ingress_recipe.scripts / "prepare-nginx-src.sh", "--tarball", release.tarball,
                      "--sha256", "0" * 64, "--conf-flags", ingress_recipe.conf_flags,
                      "--dest", tmp_path / "tree"])
    assert f"(it has {release.sha256})" in output


def test_a_patch_that_does_not_apply_stops_the_recipe(ingress_recipe, release, tmp_path):
    # The patched tree again: every patch is already in it.
    output = failing([ingress_recipe.scripts / "prepare-nginx-src.sh",
                      "--source", ingress_recipe.work / "nginx-src", "--patches", release.patches,
                      "--conf-flags", ingress_recipe.conf_flags, "--dest", tmp_path / "tree"])
    assert "01_pod_router_test.patch does not apply" in output


def test_the_flags_must_come_from_the_same_nginx_release(ingress_recipe, tmp_path):
    output = failing([ingress_recipe.scripts / "nginx-conf-flags.sh", "--nginx", NGINX,
                      "--expect-version", "1.27.1", "--output", tmp_path / "conf_flags"])
    assert "the source tree is 1.27.1" in output


def conf_flags_from(scripts, tmp_path, arguments):
    version_output = f"nginx version: nginx/1.27.1\nconfigure arguments: {arguments}\n"
    return subprocess.run([str(scripts / "nginx-conf-flags.sh"), "--output", str(tmp_path / "flags")],
                          input=version_output, capture_output=True, text=True, timeout=30)


def test_ingress_nginx_style_arguments_are_split_and_filtered(ingress_recipe, tmp_path):
    """Arguments shaped like the ingress-nginx image's nginx -V."""
    result = conf_flags_from(ingress_recipe.scripts, tmp_path, (
        "--prefix=/usr/local/nginx --modules-path=/etc/nginx/modules --with-debug --with-compat "
        "--with-threads --with-file-aio --with-stream "
        "--with-cc-opt='-g -O2 -fPIE -DTCP_FASTOPEN=23 -m64 -mtune=generic' "
        "--with-ld-opt='-fPIE -fPIC -pie -Wl,-z,relro -Wl,-z,now' --user=www-data "
        "--add-module=/tmp/build/ngx_devel_kit --add-module=/tmp/build/lua-nginx-module "
        "--add-dynamic-module=/tmp/build/ngx_brotli --with-http_xslt_module=dynamic"))
    assert result.returncode == 0, result.stderr
    assert bash_array(tmp_path / "flags") == [
        "--prefix=/usr/local/nginx", "--modules-path=/etc/nginx/modules", "--with-debug",
        "--with-compat", "--with-threads", "--with-file-aio", "--with-stream",
        "--with-cc-opt=-g -O2 -fPIE -DTCP_FASTOPEN=23 -m64 -mtune=generic",
        "--with-ld-opt=-fPIE -fPIC -pie -Wl,-z,relro -Wl,-z,now", "--user=www-data"]


@pytest.mark.parametrize("arguments, message", [
    ("--with-cc-opt='$(touch /tmp/pwned)'", "shell metacharacters"),
    ("--with-cc-opt='`id`'", "shell metacharacters"),
    ("--with-compat --with-openssl=/tmp/build/openssl-3.5", "only the original build had"),
])
def test_arguments_the_recipe_cannot_reproduce_are_refused(ingress_recipe, tmp_path, arguments, message):
    result = conf_flags_from(ingress_recipe.scripts, tmp_path, arguments)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "flags").exists()


@pytest.fixture(scope="module")
def gateway_recipe(tmp_path_factory):
    """The gateway-builder stage: make's recipe, Debian's tree and flags."""
    work = tmp_path_factory.mktemp("gateway-builder")
    context = assemble_context(parse(MODULE_DOCKERFILE).stage("gateway-builder"), work / "src")
    environment = {k: v for k, v in os.environ.items() if k != "NGINX_SRC"}
    run([context / "scripts" / "build.sh", "--target", "module", "--build-dir", work / "build"],
        cwd=context, env=environment)
    return SimpleNamespace(module=work / "build" / MODULE)


def test_the_gateway_nginx_module_loads(gateway_recipe):
    run([CHECK, "--nginx", NGINX, "--module", gateway_recipe.module])


def test_gateway_runtime_packages_cover_the_module(gateway_recipe):
    runtime = install_deps_list("--gateway-runtime")
    needed = set(library_packages(gateway_recipe.module).values())
    missing = needed - apt_closure(runtime)
    assert not missing, f"install-deps.sh --gateway-runtime lacks {sorted(missing)}"
    # And nothing the module does not load, besides nginx itself.
    assert set(runtime) - needed == {"nginx"}
