"""Overlay fingerprints against the kernel's overlayfs: random histories of file operations run
through a real overlay mount, with commits that stack the upper directory as a new layer (what
``docker commit`` and a fork do).

Properties: equal fingerprints mean equal merged trees (checked across every generated history),
and where the commits fall does not change the fingerprint (a fork sees what its source saw).
Needs root and overlayfs; skips without them, except under CI (``$CI``), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapshots.directory import tree_digest
from snapshots.overlay import FileDigests, OverlayDigests

PATHS = ["a", "a/x", "a/y", "a/z", "b", "c", "c/x", "d", "d/e", "d/e/f"]
ROOT = {"a/x": "1", "a/y": "2", "b": "3", "d/e/f": "4"}
Op = tuple[str, ...]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"overlay tests need {reason}", pytrace=False)
    pytest.skip(f"overlay tests need {reason}")


class Overlay:
    """A root layer, committed layers above it, and a mounted upper directory."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root, self.layers, self.count = base, root, [root], 0
        self.merged = base / "merged"
        self.merged.mkdir()
        self._mount()

    def _mount(self) -> None:
        self.count += 1
        self.upper, work = self.base / f"upper{self.count}", self.base / f"work{self.count}"
        self.upper.mkdir()
        work.mkdir()
        lower = ":".join(str(layer) for layer in reversed(self.layers))
        options = f"lowerdir={lower},upperdir={self.upper},workdir={work}"
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)],
            check=True,
            capture_output=True,
        )

    def commit(self) -> None:
        self.umount()
        self.layers.append(self.upper)
        self._mount()

    def umount(self) -> None:
        subprocess.run(["umount", str(self.merged)], check=True)

    def fingerprint(self, digests: OverlayDigests) -> str:
        return digests.digest([str(self.root)], [str(p) for p in self.layers[1:]],
                              str(self.upper), FileDigests())  # fmt: skip


def apply(merged: Path, op: Op) -> None:
    """One operation through the mount; one that fails (no parent, not a dir) changes nothing."""
    path = merged / op[1]
    try:
        if op[0] == "write":
            path.write_text(op[2])
        elif op[0] == "rm":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        elif op[0] == "mkdir":
            path.mkdir()
        elif op[0] == "chmod":
            os.chmod(path, int(op[2]), follow_symlinks=False)
        elif op[0] == "link":
            path.symlink_to("b")
    except OSError:
        pass


@pytest.fixture(scope="module")
def root_layer() -> Iterator[Path]:
    if os.geteuid() != 0:
        _unavailable("root (to mount overlayfs)")
    base = Path(tempfile.mkdtemp(prefix="tvcache-overlay-"))
    root = base / "root"
    (root / "c").mkdir(parents=True)
    for rel, text in ROOT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (base / "probe").mkdir()
    try:
        Overlay(base / "probe", root).umount()
    except subprocess.CalledProcessError as error:
        _unavailable(f"overlayfs mounts: {error.stderr.decode().strip()}")
    yield root
    shutil.rmtree(base)


operations = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PATHS), st.sampled_from(["1", "2", "new"])),
    st.tuples(st.just("rm"), st.sampled_from(PATHS)),
    st.tuples(st.just("mkdir"), st.sampled_from(PATHS)),
    st.tuples(st.just("chmod"), st.sampled_from(PATHS), st.sampled_from(["420", "384", "493"])),
    st.tuples(st.just("link"), st.sampled_from(PATHS)),
    st.tuples(st.just("commit")),
)
SEEN: dict[str, str] = {}
"""Fingerprint -> merged tree digest, across every history generated in this module."""


def run(root: Path, history: list[Op], digests: OverlayDigests, commits: bool) -> tuple[str, str]:
    base = Path(tempfile.mkdtemp(prefix="h-", dir=root.parent))
    overlay = Overlay(base, root)
    try:
        for op in history:
            if op[0] == "commit":
                if commits:
                    overlay.commit()
            else:
                apply(overlay.merged, op)
        return overlay.fingerprint(digests), tree_digest(overlay.merged)
    finally:
        overlay.umount()
        shutil.rmtree(base)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=12))
def test_equal_fingerprints_mean_equal_trees_wherever_commits_fall(
    root_layer: Path, history: list[Op]
) -> None:
    digests = OverlayDigests()
    layered, tree = run(root_layer, history, digests, commits=True)
    flat, flat_tree = run(root_layer, history, digests, commits=False)
    assert tree == flat_tree  # the same operations: the same files
    assert layered == flat, "a commit changed the fingerprint of the same files"
    assert SEEN.setdefault(layered, tree) == tree, "equal fingerprints, different trees"


def test_histories_that_end_alike_share_a_fingerprint(root_layer: Path) -> None:
    digests = OverlayDigests()
    untouched = run(root_layer, [], digests, commits=True)[0]
    same_as_root: list[list[Op]] = [
        [("write", "a/z", "1"), ("rm", "a/z")],
        [("rm", "b"), ("commit",), ("write", "b", "3"), ("chmod", "b", "420")],
        [("rm", "c"), ("mkdir", "c")],  # an opaque directory over an empty one
        [("write", "a/x", "2"), ("commit",), ("write", "a/x", "1")],
    ]
    for history in same_as_root:
        assert run(root_layer, history, digests, commits=True)[0] == untouched, history
    one = run(root_layer, [("write", "b", "9"), ("mkdir", "d/g")], digests, commits=True)[0]
    other = run(root_layer, [("mkdir", "d/g"), ("commit",), ("write", "b", "9")], digests, True)
    assert one == other[0] != untouched
    hidden = [("rm", "a"), ("mkdir", "a"), ("write", "a/x", "1")]  # a/y is gone
    assert run(root_layer, hidden, digests, commits=True)[0] != untouched
