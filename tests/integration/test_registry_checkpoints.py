"""``full`` checkpoints across hosts: a checkpoint directory goes to a real registry
(``docker-registry``) as one blob beside its snapshot and comes back whole on another home, or
not at all; a Docker-path ``full`` snapshot taken on home A restores with its processes on home B
after A's copy is deleted. Records name their checkpoint relative to the snapshot directory; an
old record's absolute path still works on its own host."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from docker_env import BackendFactory, sh, start
from registry_env import RegistryServer, registry_server  # noqa: F401  (fixture)

from sandbox.docker import DockerBackend
from snapshots import SnapshotError, docker_full
from snapshots import _checkpoint_blob as checkpoint_blob
from snapshots._registry_sync import RegistrySync
from snapshots.registry import DigestMismatchError, Registry


def checkpoint(store: Path, name: str) -> dict[str, tuple[int, bytes]]:
    """A CRIU-like checkpoint directory under ``store``: its files by path, mode and bytes."""
    files = {
        "tvcache/inventory.img": (0o600, b"inventory"),
        "tvcache/pages-1.img": (0o600, os.urandom(300_000)),
        "tvcache/sub/descriptors.json": (0o644, b'{"x": 1}'),
        "snapshot.json": (0o644, b'{"labels": {}}'),
    }
    for rel, (mode, body) in files.items():
        path = store / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        path.chmod(mode)
    return files


def contents(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mode & 0o7777, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_checkpoint_directory_comes_back_whole_on_another_home(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    home, away = tmp_path / "a" / "snapshots", tmp_path / "b" / "snapshots"
    expected = checkpoint(home, "runc-criu/tvcache-snapshot-s1")
    sync_a = RegistrySync(Registry(registry_server.url))
    sync_b = RegistrySync(Registry(registry_server.url))
    try:
        sync_a.push_checkpoint_later("s1", home, "runc-criu/tvcache-snapshot-s1").result()
        assert sync_a.counters["pushes"] == 1 and sync_a.counters["push_failures"] == 0
        moved = sync_b.ensure_checkpoint("s1", away, "runc-criu/tvcache-snapshot-s1")
        assert moved is not None and moved.blobs == 1
        assert contents(away / "runc-criu" / "tvcache-snapshot-s1") == expected
        assert sorted(p.name for p in (away / "runc-criu").iterdir()) == ["tvcache-snapshot-s1"]
        assert sync_b.ensure_checkpoint("s1", away, "runc-criu/tvcache-snapshot-s1") is None
        assert sync_b.counters["pulls"] == 1
        with pytest.raises(SnapshotError, match="neither on this host nor in"):
            sync_b.ensure_checkpoint("never-pushed", away, "tvcache-snapshot-never-pushed")
    finally:
        sync_a.close()
        sync_b.close()


def test_a_corrupt_checkpoint_blob_is_refused_and_leaves_nothing(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    home, away = tmp_path / "a", tmp_path / "b"
    checkpoint(home, "tvcache-snapshot-c")
    registry = Registry(registry_server.url, checkpoint_blob.CHECKPOINTS)
    checkpoint_blob.push(registry, home, "tvcache-snapshot-c", "c")
    blobs = registry_server.data / "docker" / "registry" / "v2" / "blobs"
    rotten = max(blobs.rglob("data"), key=lambda p: p.stat().st_size)  # the checkpoint's tar
    body = bytearray(rotten.read_bytes())
    body[-5000] ^= 0xFF
    rotten.write_bytes(bytes(body))
    away.mkdir()
    with pytest.raises(DigestMismatchError):
        checkpoint_blob.pull(registry, away, "tvcache-snapshot-c", "c")
    assert list(away.iterdir()) == []
    with pytest.raises(SnapshotError, match="does not name a place"):
        checkpoint_blob.pull(registry, away, "../escape", "c")
    registry.close()


@pytest.mark.docker
def test_a_docker_path_full_snapshot_restores_on_another_home_with_its_processes(
    make_backend: BackendFactory,
    api: Any,
    tmp_path: Path,
    registry_server: RegistryServer,  # noqa: F811
) -> None:
    home_a = make_backend("full", runtime="docker", registry=registry_server.url)
    home_b = DockerBackend(
        tmp_path / "b" / "snapshots",
        "full",
        api=api,
        runtime="docker",
        registry=registry_server.url,
        default_timeout=30,
    )
    try:
        with start(home_a) as source:
            sh(source, "cd /tmp; export K=kept; echo data > /tmp/f; sleep 600 &")
            handle = source.snapshot("f1")
        assert handle.level == "full", handle.meta.get("full_failure")
        name = handle.meta["checkpoint"]
        assert not os.path.isabs(name)  # the same on every host
        # a record from before (an absolute path) still restores on its own host
        old = replace(handle, meta={**handle.meta, "checkpoint": str(home_a.snapshot_dir / name)})
        with home_a.fork(old) as fork:
            assert fork.restore_fallback is None
            assert sh(fork, "jobs | wc -l; echo $K").output == "1\nkept\n"
        assert home_a.registry is not None and home_b.registry is not None
        home_a.registry.drain()
        assert home_a.registry.counters["push_failures"] == 0
        home_a.delete_snapshot(handle)
        assert not (home_a.snapshot_dir / name).exists()
        assert api.images(name=handle.location, quiet=True) == []
        with home_b.fork(handle) as fork:  # image and checkpoint pulled: B never had them
            assert fork.restore_fallback is None
            assert sh(fork, "pwd; echo $K; cat f; jobs | wc -l").output == "/tmp\nkept\ndata\n1\n"
        assert (home_b.snapshot_dir / name / docker_full.CHECKPOINT / "inventory.img").is_file()
        assert home_b.registry.counters["pulls"] == 2  # the image and the checkpoint
        home_b.delete_snapshot(handle)
        assert not (home_b.snapshot_dir / name).exists()
    finally:
        home_b.close()
