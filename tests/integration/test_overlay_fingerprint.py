"""Overlay fingerprints against the kernel's overlayfs: random histories of file operations run
through a real overlay mount, with commits that stack the upper directory as a new layer (what
``docker commit`` and a fork do).

Every operation stamps what it touched with a modification time taken from its step number, a
deterministic stand-in for the clock. Properties: equal fingerprints mean equal merged trees with
the same order of times (checked across every generated history), and where the commits fall
does not change the fingerprint (a fork sees what its source saw).
Needs root and overlayfs; skips without them, except under CI (``$CI``), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import unavailable

from snapshots.directory import tree_digest
from snapshots.fingerprint import order_times
from snapshots.overlay import FileDigests, OverlayDigests

PATHS = ["a", "a/x", "a/y", "a/z", "b", "c", "c/x", "d", "d/e", "d/e/f"]
ROOT = {"a/x": "1", "a/y": "2", "b": "3", "d/e/f": "4"}
ROOT_TIME = 1_000_000_000
"""The root layer's modification times: set on purpose, so they count by value."""
CLOCK = 1_500_000_000
"""Step ``n`` stamps the times ``CLOCK + n``: clock times, which count by their order."""
Op = tuple[str, ...]


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"overlay tests need {reason}")


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
        layers = [str(p) for p in self.layers[1:]]
        upper = str(self.upper)
        return digests.digest(
            [str(self.root)], layers, upper, FileDigests(), times_since=ROOT_TIME + 1
        )


def apply(merged: Path, op: Op, step: int) -> None:
    """One operation through the mount, then the times of the path and its parent set to the
    step's clock time (``reset``: to the root's). One that fails changes nothing."""
    path = merged / op[1]
    try:
        if op[0] == "reset":
            os.utime(path, (ROOT_TIME, ROOT_TIME), follow_symlinks=False)
            return
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
            if path.is_symlink():
                return
            path.chmod(int(op[2]))
        elif op[0] == "link":
            path.symlink_to("b")
    except OSError:
        return
    for touched in (path, path.parent):
        if touched != merged and os.path.lexists(touched):
            os.utime(touched, (CLOCK + step, CLOCK + step), follow_symlinks=False)


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
    for entry in [*root.rglob("*")]:
        os.utime(entry, (ROOT_TIME, ROOT_TIME))
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
    st.tuples(st.just("reset"), st.sampled_from(PATHS)),
    st.tuples(st.just("commit")),
)
SEEN: dict[str, tuple[str, object]] = {}
"""Fingerprint -> merged tree (digest, times in order), across every history generated here."""


def run(
    root: Path, history: list[Op], digests: OverlayDigests, commits: bool
) -> tuple[str, tuple[str, object]]:
    base = Path(tempfile.mkdtemp(prefix="h-", dir=root.parent))
    overlay = Overlay(base, root)
    try:
        for step, op in enumerate(history):
            if op[0] == "commit":
                if commits:
                    overlay.commit()
            else:
                apply(overlay.merged, op, step)
        mtimes: dict[str, int] = {}
        tree = tree_digest(overlay.merged, mtimes)
        times = order_times(mtimes, ROOT_TIME + 1, CLOCK + len(history))
        return overlay.fingerprint(digests), (tree, sorted(times.items()))
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
        [("write", "a/z", "1"), ("rm", "a/z"), ("reset", "a")],
        [("rm", "b"), ("commit",), ("write", "b", "3"), ("chmod", "b", "420"), ("reset", "b")],
        [("rm", "c"), ("mkdir", "c"), ("reset", "c")],  # an opaque directory over an empty one
        [
            ("write", "a/x", "2"),
            ("commit",),
            ("write", "a/x", "1"),
            ("reset", "a/x"),
            ("reset", "a"),
        ],
    ]
    for history in same_as_root:
        assert run(root_layer, history, digests, commits=True)[0] == untouched, history
    b_first: list[Op] = [("write", "b", "9"), ("mkdir", "d/g")]
    g_first: list[Op] = [("mkdir", "d/g"), ("commit",), ("write", "b", "9")]
    assert run(root_layer, b_first, digests, True)[0] != run(root_layer, g_first, digests, True)[0]
    same_times: list[Op] = [("reset", "b"), ("reset", "d/g"), ("reset", "d")]
    one = run(root_layer, b_first + same_times, digests, commits=True)[0]
    assert one == run(root_layer, g_first + same_times, digests, commits=True)[0] != untouched
    hidden = [("rm", "a"), ("mkdir", "a"), ("write", "a/x", "1"), ("reset", "a"), ("reset", "a/x")]
    assert run(root_layer, hidden, digests, commits=True)[0] != untouched  # a/y is gone
