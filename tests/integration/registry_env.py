"""A private Docker registry for a test: ``docker-registry serve`` on a free loopback port,
storage in the test's tmp dir, deletion on; stopped afterwards. Its access log tells what
clients asked (``requests``), so tests count uploads at the registry, not in the client."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from needs import unavailable

CONFIG = """version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: tvcache-test
"""
_REQUEST = re.compile(r'"([A-Z]+) (/v2/\S*) HTTP/[\d.]+" (\d+)')


@dataclass
class RegistryServer:
    url: str
    config: Path
    data: Path
    log: Path

    def requests(self, method: str, fragment: str = "") -> int:
        """Requests ``method`` whose path holds ``fragment`` that the registry answered 2xx."""
        found = _REQUEST.findall(self.log.read_text(errors="replace"))
        return sum(
            1 for m, path, status in found if m == method and fragment in path and status[0] == "2"
        )

    def stored_bytes(self) -> int:
        """Bytes of the blobs on the registry's disk (what garbage collection frees)."""
        blobs = self.data / "docker" / "registry" / "v2" / "blobs"
        return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    binary = shutil.which("docker-registry")
    if binary is None:
        unavailable("registry tests need docker-registry; run scripts/install-registry.sh")
    base = tmp_path / "registry"
    base.mkdir()
    port = _free_port()
    config = base / "config.yml"
    config.write_text(CONFIG.format(data=base / "data", port=port))
    log = base / "access.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield RegistryServer(url, config, base / "data", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
