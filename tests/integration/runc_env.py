"""Fixtures and checks of the runc path's integration tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from docker_env import BackendFactory
from needs import unavailable

from sandbox import _runc
from sandbox.docker import DockerBackend


@pytest.fixture(params=["runc", "crun"])
def runc_backend(
    make_backend: BackendFactory, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A backend on the runc path, once with each OCI runtime; closed (and checked clean)
    afterwards."""
    reason = _runc.available()
    if reason is not None:
        unavailable(f"the runc path: {reason}")
    oci = str(request.param)
    if shutil.which(oci) is None:
        unavailable(f"the OCI runtime {oci}: sh scripts/install-crun.sh (runc comes with Docker)")
    monkeypatch.setenv(_runc.OCI_ENV, oci)
    made: list[DockerBackend] = []

    def make(**kwargs: Any) -> DockerBackend:
        backend = make_backend("fs", runtime="runc", **kwargs)
        assert backend.runc is not None and backend.runc.oci == oci
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def leftovers(backend: DockerBackend) -> dict[str, list[str]]:
    """What a run left: runc containers, mounts, layers, boxes, protocol dirs (of an open
    backend, all but the directories it laid out ahead for its next sandboxes, which
    ``close`` removes)."""
    runc = backend.runc
    assert runc is not None
    runc.drain()
    ahead = set(runc._skeletons)
    mine = []
    for name in _runc.containers():
        bundle = Path(str((_runc.state(name) or {}).get("bundle", "")))
        if bundle.parent == runc.boxes:
            mine.append(name)
    store = backend.snapshot_dir.parent
    return {
        "containers": mine,
        "mounts": [str(p) for p in _runc.mounted_under(store)],
        "layers": runc.layers.layers(),
        "boxes": sorted(e.name for e in runc.boxes.iterdir() if e.name not in ahead),
        "protocol dirs": sorted(e.name for e in backend.work_dir.iterdir() if e.name not in ahead),
    }


CLEAN: dict[str, list[str]] = {
    "containers": [],
    "mounts": [],
    "layers": [],
    "boxes": [],
    "protocol dirs": [],
}
