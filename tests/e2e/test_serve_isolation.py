"""``tvcache serve`` where local commands cannot be isolated.

"Cannot" is made real by a ``$PATH`` without bubblewrap: the server refuses the local backend
unless ``--unsafe-no-isolation`` is passed, which it then announces loudly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from integration.needs import unavailable

from sandbox._isolation import probe
from tvcache.client import Client
from tvcache.service import ServerProcess


@pytest.fixture(autouse=True)
def _bubblewrap() -> None:
    """Skip without a working bubblewrap; under CI fail (CI must never pass by skipping)."""
    found = probe()
    if not found.ok:
        unavailable(f"these tests need working bubblewrap: {found.detail}; {found.fix}")


def _cli(
    home: Path, *args: str, path: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path if path is not None else os.environ.get("PATH", ""), **extra}
    env.pop("TVCACHE_STORE_URL", None)
    command = [sys.executable, "-m", "tvcache.cli", "--home", str(home), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_serve_refuses_the_local_backend_without_isolation(tmp_path: Path) -> None:
    no_bwrap = tmp_path / "empty-bin"
    no_bwrap.mkdir()
    refused = _cli(tmp_path / "home", "serve", "--port", "0", path=str(no_bwrap))
    assert refused.returncode == 2
    assert "refusing to serve the local backend" in refused.stderr
    assert "bubblewrap (bwrap) is not installed" in refused.stderr
    assert "--unsafe-no-isolation" in refused.stderr and "install-bubblewrap.sh" in refused.stderr
    switched_off = _cli(tmp_path / "home", "serve", "--port", "0", TVCACHE_SANDBOX_ISOLATION="off")
    assert switched_off.returncode == 2 and "refusing" in switched_off.stderr
    assert "disabled" in switched_off.stderr


def test_the_opt_out_serves_unisolated_and_says_so_loudly(tmp_path: Path) -> None:
    no_bwrap = tmp_path / "empty-bin"
    no_bwrap.mkdir()
    env = {"PATH": str(no_bwrap)}
    with ServerProcess(tmp_path / "home", "--unsafe-no-isolation", env=env) as server:
        assert "WARNING --unsafe-no-isolation" in server.log()
        assert "WITHOUT isolation" in server.log()
        with Client(server.url) as client, client.session("t") as session:
            marker = tmp_path / "written-from-the-sandbox"
            session.call("bash", command=f"/usr/bin/touch {marker}")
        assert marker.exists()  # what the opt-out means: the host is in reach


def test_serve_says_its_commands_are_isolated(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "home", "--log-level", "warning") as server:
        assert httpx.get(f"{server.url}/v1/health").status_code == 200
        assert "local backend: commands run isolated (bubblewrap" in server.log()
