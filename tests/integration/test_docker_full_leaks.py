"""What ``full`` forks leave on disk: nothing, once the forks are closed and the snapshot deleted.

containerd unpacks the checkpoint of every restore into a ``ctrd-checkpoint*`` directory of its
temporary directory and never removes it (a full copy per fork, a disk leak in training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker_env import BackendFactory, sh, start

from snapshots import docker_full

pytestmark = pytest.mark.docker


def _unpacked_copies(containers: set[str]) -> list[Path]:
    """containerd's unpacked checkpoints that name one of ``containers`` in their marker."""
    found = []
    for marker in Path("/tmp").glob(f"ctrd-checkpoint*/{docker_full.MARKER}"):
        try:
            if marker.read_text().split()[0] in containers:
                found.append(marker.parent)
        except (OSError, IndexError):
            continue
    return found


def test_full_forks_leave_nothing_on_disk(
    make_backend: BackendFactory, api: Any, full_runtime: str
) -> None:
    backend = make_backend("full")
    with start(backend) as box:
        sh(box, "head -c 3000000 /dev/urandom > /tmp/blob; sleep 600 &")
        snap = box.snapshot("s")
    assert snap.level == "full", snap.meta.get("full_failure")
    containers: set[str] = set()
    for _ in range(3):
        with backend.fork(snap) as fork:
            assert fork.restore_fallback is None
            assert "sleep 600" in sh(fork, "jobs").output
            containers.add(fork.container_id)
    backend.delete_snapshot(snap)
    assert _unpacked_copies(containers) == []
    docker_containers = Path(api.info()["DockerRootDir"]) / "containers"
    assert [c for c in containers if (docker_containers / c).exists()] == []
    backend.close()  # the runc path removes boxes and layers in the background
    store = backend.snapshot_dir  # empty, but for the runc path's (empty) directories
    assert [p for p in store.rglob("*") if p.parent != store or not p.is_dir()] == []
    assert list(backend.work_dir.iterdir()) == []
