"""containerd's unpacked checkpoint copies: which ones a reconcile may remove."""

from __future__ import annotations

import os
import time
from pathlib import Path

from snapshots import docker_full


def _copy(temp: Path, name: str, marker: str | None, age: float = 3600) -> Path:
    path = temp / f"{docker_full.UNPACKED_PREFIX}{name}"
    path.mkdir()
    (path / "pages-1.img").write_bytes(b"x" * 100)
    if marker is not None:
        (path / docker_full.MARKER).write_text(marker)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_sweep_removes_only_this_stores_copies_of_gone_containers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    gone = _copy(tmp_path, "1", f"c-gone nonce {store}\n")
    live = _copy(tmp_path, "2", f"c-live nonce {store}\n")
    other = _copy(tmp_path, "3", f"c-gone nonce {tmp_path / 'other'}\n")
    young = _copy(tmp_path, "4", f"c-new nonce {store}\n", age=1)
    foreign = _copy(tmp_path, "5", None)  # not tvcache's restore
    old_marker = _copy(tmp_path, "6", "c-gone nonce\n")  # no store: cannot say whose
    removed = docker_full.sweep_unpacked(store, {"c-live"}, [tmp_path])
    assert removed == [gone.name]
    assert not gone.exists()
    assert all(p.exists() for p in (live, other, young, foreign, old_marker))


def test_install_writes_a_marker_that_names_the_store(tmp_path: Path) -> None:
    source = tmp_path / "checkpoint"
    source.mkdir()
    (source / "inventory.img").write_bytes(b"inv")
    root = tmp_path / "docker"
    marker = docker_full.install(source, root, "c1", tmp_path / "store")
    installed = root / "containers" / "c1" / "checkpoints" / docker_full.CHECKPOINT
    assert (installed / docker_full.MARKER).read_text() == marker
    container, nonce, store = marker.split()
    assert (container, store) == ("c1", str(tmp_path / "store")) and len(nonce) == 32
