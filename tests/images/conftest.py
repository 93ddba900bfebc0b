"""Shared by the image tests: where the Dockerfiles are, the build context
as a builder stage sees it (only what its COPY lines bring, less what
.dockerignore leaves out), and running the recipe's scripts."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dockerfile import parse

REPO = Path(__file__).resolve().parents[2]
MODULE_DOCKERFILE = REPO / "ngx_pod_router_module" / "Dockerfile"
CONTROLLER_DOCKERFILE = REPO / "controller" / "Dockerfile"
NGINX = os.environ.get("POD_ROUTER_NGINX", "/usr/sbin/nginx")
# Where the builder stages put the sources (their WORKDIR).
BUILDER_WORKDIR = "/src"


def dockerignore_patterns():
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert not line.startswith("!"), "the matcher below has no exceptions"
            patterns.append(line.strip("/"))
    return patterns


def _pattern_regex(pattern):
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern)
    table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(p, re.escape(p)) for p in parts) + r"\Z")


def ignored(relative, patterns=None):
    """Whether .dockerignore keeps REPO/relative out of the build context
    (a pattern that matches a folder excludes what is in it)."""
    patterns = dockerignore_patterns() if patterns is None else patterns
    parts = Path(relative).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(_pattern_regex(p).match(prefix) for p in patterns for prefix in prefixes)


def copied_sources(stage):
    """(sources, destination) of each COPY from the build context."""
    copies = []
    for copy in stage.all("COPY"):
        flags, words = copy.flags_and_words()
        if "from" not in flags:
            copies.append((words[:-1], words[-1]))
    return copies


def assemble_context(stage, dest):
    """Lays out under dest what the stage's COPY lines put in its WORKDIR."""
    assert any(w.text == BUILDER_WORKDIR for w in stage.all("WORKDIR")), stage.name
    patterns = dockerignore_patterns()

    def skip(folder, names):
        base = Path(folder).relative_to(REPO)
        return [n for n in names if ignored(base / n, patterns)]

    for sources, target in copied_sources(stage):
        for source in sources:
            assert not ignored(source, patterns), f"{source} is in .dockerignore"
            origin = REPO / source
            into_folder = target.endswith("/") or len(sources) > 1
            where = dest / target / origin.name if into_folder else dest / target
            where.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, where, ignore=skip, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, where)
    return dest


def run(command, **options):
    """Runs a recipe step; on failure the assertion shows its output."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=options.pop("timeout", 600), **options)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def module_dockerfile():
    return parse(MODULE_DOCKERFILE)


@pytest.fixture(scope="session")
def controller_dockerfile():
    return parse(CONTROLLER_DOCKERFILE)


def bash_array(conf_flags):
    """NGX_CONF_FLAGS from a conf_flags file, as build-module.sh reads it."""
    out = run(["bash", "-c", '. "$1"; printf "%s\\0" "${NGX_CONF_FLAGS[@]}"', "-", conf_flags]).stdout
    return out.split("\0")[:-1]


def _owner(path):
    """The Debian package that installed a library (usrmerge: try both names)."""
    path = Path(path)
    candidates = {path, path.resolve()}
    for p in list(candidates):
        text = str(p)
        candidates.add(Path(text[4:] if text.startswith("/usr/") else "/usr" + text))
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", str(candidate)], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(": ", 1)[0].split(":")[0]
    raise AssertionError(f"no Debian package owns {path}")


def library_packages(binary):
    """{library: package} for every library the dynamic loader maps for binary."""
    libraries = {}
    for line in run(["ldd", binary]).stdout.splitlines():
        assert "not found" not in line, f"{binary}: {line.strip()}"
        words = line.split()
        path = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
        if path.startswith("/"):
            libraries[path] = _owner(path)
    return libraries


def apt_closure(packages):
    """The packages, and everything they depend on, as apt would install them."""
    out = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
               "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
               *packages]).stdout
    return {line.strip() for line in out.splitlines() if line and not line[0].isspace()}


def install_deps_list(group):
    return run([REPO / "scripts" / "install-deps.sh", group, "--list"]).stdout.split()
