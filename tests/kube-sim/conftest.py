"""Shared fixtures: kube-sim's package on the import path, and one kube-sim
per test session (each test module works in its own namespace)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "scripts" / "kube-sim"))
sys.path.insert(0, str(HERE))

from cluster import KubeSim  # noqa: E402 (needs the path above)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("kube-sim")
    sim = KubeSim(state_dir, "--audit-log", str(state_dir / "audit.log"))
    sim.audit_path = state_dir / "audit.log"
    yield sim
    assert sim.stop() == 0, sim.log_path.read_text()[-3000:]
