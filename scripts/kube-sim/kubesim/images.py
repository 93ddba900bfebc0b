"""The image map: what a container "runs" on this machine.

A JSON file maps image names to commands:

    {"images": {
        "httpd": {"demo": true},
        "my-app": {"command": ["/usr/bin/my-app", "--listen", "{pod_ip}:{port}"],
                   "env": {"MODE": "test"}}
    }}

Placeholders in a command: {pod_ip}, {port} (the container's first
containerPort, 80 when none), {pod_name}, {namespace}, {container}. A name
matches with its registry, tag and digest removed ("docker.io/library/
httpd:2.4" is "httpd"), trying the full repository path first. An image
that matches nothing fails to pull, as an image missing from a registry does.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)

# The seed's demo pod runs "httpd"; pod-router's shipped pod template runs
# the non-root "nginxinc/nginx-unprivileged". All serve the demo page.
DEFAULT_IMAGES = {"httpd": {"demo": True}, "nginxinc/nginx-unprivileged": {"demo": True},
                  "kube-sim/demo": {"demo": True}}


@dataclass(frozen=True)
class Runtime:
    kind: str  # "demo": served by the shared in-process demo host; "process": a command
    command: tuple = ()
    env: dict = field(default_factory=dict, hash=False, compare=False)


def _repository(image):
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1:]:
        name = name[: name.rfind(":")]
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name


class ImageMap:
    def __init__(self, entries, demo_as_process=False):
        self._runtimes = {}
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                raise ValueError(f"image {name!r}: entry must be an object")
            if entry.get("demo"):
                if demo_as_process:
                    self._runtimes[name] = Runtime("process", (
                        sys.executable, "-m", "kubesim.demo_pod", "--name", "{pod_name}",
                        "--ip", "{pod_ip}", "--port", "{port}",
                    ), {"PYTHONPATH": PACKAGE_ROOT})
                else:
                    self._runtimes[name] = Runtime("demo")
                continue
            command = entry.get("command")
            if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
                raise ValueError(f"image {name!r}: \"command\" must be a non-empty list of strings")
            env = entry.get("env") or {}
            if not isinstance(env, dict):
                raise ValueError(f"image {name!r}: \"env\" must be an object")
            self._runtimes[name] = Runtime("process", tuple(command), {k: str(v) for k, v in env.items()})

    @classmethod
    def load(cls, path=None, demo_as_process=False):
        entries = dict(DEFAULT_IMAGES)
        if path:
            with open(path) as handle:
                document = json.load(handle)
            images = document.get("images") if isinstance(document, dict) else None
            if not isinstance(images, dict):
                raise ValueError(f"{path}: expected an object with an \"images\" object")
            entries.update(images)
        return cls(entries, demo_as_process)

    def resolve(self, image):
        repository = _repository(image)
        return self._runtimes.get(repository) or self._runtimes.get(repository.rsplit("/", 1)[-1])

