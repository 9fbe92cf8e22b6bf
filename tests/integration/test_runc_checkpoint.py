"""runc checkpoint/restore without Docker (the floor ``bench terminal --levels`` measures)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from needs import unavailable

from sandbox.docker import DEFAULT_IMAGE, DockerBackend
from snapshots import runc_checkpoint as rc
from tvcache.bench.levels import PROCESSES, RSS_PROCESSES, _layers, _restore_and_read

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("network_lock", [True, False])
def test_processes_survive_a_restore(tmp_path: Path, api: Any, network_lock: bool) -> None:
    if shutil.which("runc") is None:
        unavailable("runc (it comes with Docker: scripts/setup-docker.sh)")
    backend = DockerBackend(tmp_path / "snapshots", "full", api=api)
    bundle = rc.make_bundle(
        tmp_path / "b", _layers(backend, DEFAULT_IMAGE), PROCESSES, network_lock=network_lock
    )
    try:
        rc.run(bundle, "c")
        before = ["sleep 600 ", "sleep 601 "]
        deadline = time.monotonic() + 30
        while sorted(rc.processes(bundle, "c")) != before:  # until bash has exec'd
            assert time.monotonic() < deadline, rc.processes(bundle, "c")
            time.sleep(0.02)
        images = tmp_path / "images"
        rc.checkpoint(bundle, "c", images)
        assert rc.processes(bundle, "c") == []  # the dump ended them
        for _ in range(2):  # restore only reads the images: twice from one checkpoint
            rc.restore(bundle, "c", images)
            assert sorted(rc.processes(bundle, "c")) == before
            rc.delete(bundle, "c")
        log = (tmp_path / "images-restore-work" / "restore.log").read_text()
        assert "Parsing config file" in log  # the bundle's, which skips the lock or not
        conf = (tmp_path / "b" / "criu.conf").read_text()
        assert ("network-lock skip" in conf) is not network_lock
    finally:
        rc.remove_bundle(bundle, ["c"])
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("lazy", [False, True])
def test_a_restored_process_reads_all_of_its_memory(tmp_path: Path, api: Any, lazy: bool) -> None:
    """Lazy pages (userfaultfd) or not, the process sees every byte it had (the bench checks
    the same md5 in every round)."""
    if shutil.which("runc") is None:
        unavailable("runc (it comes with Docker: scripts/setup-docker.sh)")
    backend = DockerBackend(tmp_path / "snapshots", "full", api=api, runtime="docker")
    layers = _layers(backend, DEFAULT_IMAGE)
    bundle = rc.make_bundle(tmp_path / "b", layers, RSS_PROCESSES, network_lock=False)
    try:
        rc.run(bundle, "c")
        (bundle.rootfs / "tmp/go").touch()  # the process answers once its memory is filled
        deadline = time.monotonic() + 60
        while not (bundle.rootfs / "tmp/sum").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rc.checkpoint(bundle, "c", tmp_path / "images")
        _restore_and_read(bundle, tmp_path / "images", "c", lazy)  # raises on a wrong md5
    finally:
        rc.remove_bundle(bundle, ["c"])
