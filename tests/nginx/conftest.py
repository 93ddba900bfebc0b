"""Fixtures for the module-loading tests: see tests/support/nginx_runner.py."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from nginx_runner import MODULE, Nginx  # noqa: E402 (needs the path above)


@pytest.fixture
def nginx(tmp_path):
    if not MODULE or not Path(MODULE).is_file():
        pytest.fail(f"POD_ROUTER_MODULE does not name the built module: {MODULE!r}")
    server = Nginx(tmp_path)
    yield server
    server.stop()
