"""The pure parts of overlay fingerprints: folding layer maps, splitting Docker's layer lists,
and re-reading a file only when it changed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snapshots import overlay
from snapshots.overlay import DELETED, FileDigests, apply_layer, split_layers


def test_a_whiteout_or_an_opaque_directory_hides_what_lies_below() -> None:
    below = {"d": ("dir", 0o755, 0, 0, False), "d/x": ("file", 0o644, 0, 0, 1, "h"), "f": DELETED}
    assert apply_layer(below, {"d": DELETED}) == {"d": DELETED, "f": DELETED}
    opaque = ("dir", 0o700, 0, 0, True)
    assert apply_layer(below, {"d": opaque, "d/y": DELETED}) == {
        "d": opaque,
        "d/y": DELETED,
        "f": DELETED,
    }


def test_a_directory_over_a_deleted_path_starts_empty() -> None:
    """Even a layer that forgot the opaque mark cannot bring back what was deleted below."""
    plain = ("dir", 0o755, 0, 0, False)
    folded = apply_layer({"d": DELETED}, {"d": plain})
    assert folded == {"d": ("dir", 0o755, 0, 0, True)}
    assert apply_layer({"d": plain}, {"d": ("dir", 0o700, 0, 0, False)})["d"][4] is False


def test_split_layers_finds_the_snapshot_layers_above_the_root_image() -> None:
    root = {"UpperDir": "/o/r2/diff", "LowerDir": "/o/r1/diff"}
    container = {
        "UpperDir": "/o/c/diff",
        "LowerDir": "/o/c-init/diff:/o/s2/diff:/o/s1/diff:/o/r2/diff:/o/r1/diff",
    }
    assert split_layers(container, root) == (
        ["/o/r2/diff", "/o/r1/diff"],
        ["/o/s1/diff", "/o/s2/diff"],
        "/o/c/diff",
    )
    flattened = {"UpperDir": "/o/c/diff", "LowerDir": "/o/c-init/diff:/o/flat/diff"}
    assert split_layers(flattened, root) is None
    assert split_layers(container, {"UpperDir": "/o/base/diff"}) is None


def test_a_file_is_read_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = overlay._file_digest
    monkeypatch.setattr(overlay, "_file_digest", lambda p: reads.append(p) or real(p))
    path = tmp_path / "f"
    path.write_text("one")
    files = FileDigests()
    first = files.digest(str(path), os.lstat(path))
    assert files.digest(str(path), os.lstat(path)) == first and len(reads) == 1
    path.write_text("two")
    assert files.digest(str(path), os.lstat(path)) != first and len(reads) == 2
