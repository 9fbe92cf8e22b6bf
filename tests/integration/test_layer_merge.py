"""Flattening never changes what a fork sees: for random stacks of layers written through
real overlay mounts (files written, replaced, deleted; directories removed and made again,
which makes them opaque), the flattened layer shows exactly the stacked view.

A wrong flatten would hand forks a state their history never produced: the guarantee's
worst case, so it is checked as a property (hypothesis), on real overlayfs (root only).
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from needs import unavailable

from sandbox._runc import mount_overlay, unmount
from snapshots.layers import merge

NAMES = ["a", "b", "d/c", "d/e", "d/f/g"]
Op = tuple[str, str, int]  # (kind, path, value)

ops = st.tuples(
    st.sampled_from(["write", "delete", "rmdir", "chmod"]),
    st.sampled_from(NAMES),
    st.integers(0, 3),
)
layers = st.lists(st.lists(ops, max_size=6), min_size=1, max_size=5)


@pytest.fixture(scope="module")
def root() -> None:
    if os.geteuid() != 0:
        unavailable("overlay mounts need root")


@contextmanager
def mounted(where: Path, lowers: list[Path], name: str) -> Iterator[Path]:
    bundle = where / f"mnt-{name}"
    bundle.mkdir()
    (bundle / "upper").mkdir()
    (bundle / "work").mkdir()
    rootfs = mount_overlay(bundle, [str(p) for p in lowers], bundle / "upper", bundle / "work")
    try:
        yield rootfs
    finally:
        unmount(rootfs)


def apply(view: Path, op: Op) -> None:
    kind, rel, value = op
    path = view / rel
    if kind == "write":
        if path.is_dir():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            return
        path.write_text(f"{rel}={value}\n")
    elif kind == "delete" and path.is_file():
        path.unlink()
    elif kind == "rmdir" and (view / "d").is_dir():
        subprocess.run(["rm", "-rf", str(view / "d")], check=True)
        (view / "d").mkdir()
        (view / "d" / "new").write_text(str(value))
    elif kind == "chmod" and path.is_file():
        path.chmod(0o600 + value)


def tree(view: Path) -> dict[str, tuple[str, int, str]]:
    found = {}
    for base, dirs, files in os.walk(view):
        for name in [*dirs, *files]:
            path = Path(base) / name
            st_ = path.lstat()
            body = path.read_text() if stat.S_ISREG(st_.st_mode) else ""
            kind = "dir" if stat.S_ISDIR(st_.st_mode) else "file"
            found[str(path.relative_to(view))] = (kind, stat.S_IMODE(st_.st_mode), body)
    return found


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stack=layers)
def test_a_flattened_stack_shows_what_the_stack_shows(root: None, stack: list[list[Op]]) -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-merge-") as temp:
        where = Path(temp)
        image = where / "image"
        (image / "d" / "f").mkdir(parents=True)
        (image / "a").write_text("image a\n")
        (image / "d" / "c").write_text("image c\n")
        (image / "d" / "f" / "g").write_text("image g\n")
        uppers: list[Path] = []  # top first
        for index, layer_ops in enumerate(stack):
            with mounted(where, [*uppers, image], f"w{index}") as view:
                for op in layer_ops:
                    apply(view, op)
            frozen = where / f"layer{index}"
            (where / f"mnt-w{index}" / "upper").rename(frozen)
            uppers.insert(0, frozen)
        flat = where / "flat"
        merge(list(reversed(uppers)), flat)
        with (
            mounted(where, [*uppers, image], "stacked") as stacked,
            mounted(where, [flat, image], "flat") as flattened,
        ):
            assert tree(flattened) == tree(stacked)


def test_a_merge_never_follows_a_layers_symlink(root: None, tmp_path: Path) -> None:
    """A sandbox can leave ``d -> /host/path`` in one layer and a directory ``d`` in the next:
    merging replaces the link and writes nothing where it pointed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    (lower / "d").symlink_to(outside)
    (lower / "e").symlink_to(outside / "file")
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "planted").write_text("x")
    (upper / "e").write_text("y")
    merge([lower, upper], tmp_path / "flat")
    assert list(outside.iterdir()) == []
    assert (tmp_path / "flat" / "d").is_dir() and not (tmp_path / "flat" / "d").is_symlink()
    assert (tmp_path / "flat" / "d" / "planted").read_text() == "x"
    assert (tmp_path / "flat" / "e").read_text() == "y" and not (
        tmp_path / "flat" / "e"
    ).is_symlink()
