"""A private Docker registry for a test: ``docker-registry serve`` on a free loopback port,
storage in the test's tmp dir, deletion on; stopped afterwards. Its access log tells what
clients asked (``requests``), so tests count uploads at the registry, not in the client."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from needs import unavailable

from tvcache.bench.registry import serve_registry

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


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    if shutil.which("docker-registry") is None:
        unavailable("registry tests need docker-registry; run scripts/install-registry.sh")
    base = tmp_path / "registry"
    base.mkdir()
    log = base / "access.log"
    with serve_registry(base, log) as url:
        yield RegistryServer(url, base / "config.yml", base / "data", log)
