"""scripts/node-check.sh on this machine: what it offers a real node
(docs/node.md). Every machine the project is built and tested on has what
the checks ask (scripts/install-deps.sh installs the binaries), so all
pass here; and the checks leave nothing behind."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_CHECK = REPO / "scripts" / "node-check.sh"
LINE = re.compile(r"^(ok|FAIL|note) +([a-z-]+) +(.+)$")
CHECKS = {"root", "cgroups", "init", "swap", "kmsg", "overlayfs", "netns", "bridge-netfilter",
          "ip-forward", "iptables", "conntrack", "binaries", "addresses"}


def run(*args, user=None):
    command = [str(NODE_CHECK), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def verdicts(output):
    found = {}
    for line in output.splitlines():
        match = LINE.match(line)
        assert match, f"not a check's line: {line!r}"
        found[match.group(2)] = (match.group(1), match.group(3))
    return found


def netns_names():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_this_machine_offers_a_node_everything_it_needs(tmp_path):
    done = run("--dir", str(tmp_path))
    found = verdicts(done.stdout)
    failed = {name: detail for name, (verdict, detail) in found.items() if verdict == "FAIL"}
    assert failed == {}, failed
    assert done.returncode == 0, done.stderr
    # every check ran and said what it saw
    assert CHECKS <= set(found), set(found)
    assert "nf_tables" in found["iptables"][1] or "legacy" in found["iptables"][1]
    # nothing left behind: the throw-away namespace, the overlay probe
    assert "pod-router-check" not in netns_names()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_says_why_and_fails_the_run(tmp_path):
    tmp_path.chmod(0o777)
    done = run("--dir", str(tmp_path), user=65534)
    assert done.returncode == 1
    verdict, detail = verdicts(done.stdout)["root"]
    assert verdict == "FAIL" and "root" in detail


def test_bad_usage_is_refused():
    done = run("--no-such-flag")
    assert done.returncode == 2
    assert "unknown argument --no-such-flag" in done.stderr
