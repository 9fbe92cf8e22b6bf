"""Layer garbage collection racing a snapshot that freezes a layer at the same time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from snapshots.layers import LayerStore


def test_a_layer_frozen_while_gc_runs_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LayerStore(tmp_path / "layers")
    (tmp_path / "old").mkdir()
    old = store.freeze(tmp_path / "old", [])
    store.delete(old)  # its snapshot is gone: gc removes it
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "f").write_text("written before the snapshot\n")
    frozen: list[str] = []
    needed = LayerStore.needed

    def needed_then_a_snapshot(self: LayerStore, *args: Any) -> set[str]:
        found = needed(self, *args)
        frozen.append(store.freeze(tmp_path / "upper", []))  # another thread's snapshot
        return found

    monkeypatch.setattr(LayerStore, "needed", needed_then_a_snapshot)
    assert store.gc(set()) == [old]
    assert store.layers() == frozen and store.chain(frozen[0]) == frozen
    assert (store.diff(frozen[0]) / "f").read_text() == "written before the snapshot\n"
