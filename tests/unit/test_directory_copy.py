"""copy_tree's in-process path gives what ``cp -a`` gives: bytes, modes and times of every
entry, an independent copy; anything it does not handle goes to ``cp`` unchanged."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapshots import directory as sdir

NAMES = st.sampled_from(["a", "b", "db.sqlite", "x y", "ünï"])
FILES = st.dictionaries(
    st.tuples(st.sampled_from(["", "d", "d/e"]), NAMES),
    st.tuples(st.binary(max_size=3000), st.sampled_from([0o600, 0o644, 0o755, 0o400])),
    max_size=8,
)


def _view(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry's mode, modification time and (for files) bytes, by relative path."""
    seen: dict[str, tuple[int, int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in ["", *dirnames, *filenames]:
            path = Path(dirpath) / name
            info = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            seen[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, data)
    return seen


def _build(root: Path, files: dict[tuple[str, str], tuple[bytes, int]]) -> None:
    (root / "d" / "e").mkdir(parents=True)
    for i, ((folder, name), (data, mode)) in enumerate(sorted(files.items())):
        path = root / folder / name
        path.write_bytes(data)
        path.chmod(mode)
        os.utime(path, ns=(1_000_000_123 + i, 1_700_000_000_123_456_789 - i))
    os.chmod(root / "d", 0o750)
    os.utime(root / "d", ns=(5, 1_600_000_000_000_000_007))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=FILES)
def test_plain_tree_copies_like_cp(
    tmp_path_factory: pytest.TempPathFactory, files: dict[tuple[str, str], tuple[bytes, int]]
) -> None:
    base = tmp_path_factory.mktemp("copy")
    (base / "src").mkdir()
    _build(base / "src", files)
    sdir.copy_tree(base / "src", base / "ours")
    subprocess.run(["cp", "-a", "-T", str(base / "src"), str(base / "cp")], check=True)
    assert _view(base / "ours") == _view(base / "src") == _view(base / "cp")
    for path in (base / "ours").rglob("*"):  # independent: writes to the copy stay there
        if path.is_file() and path.stat().st_mode & stat.S_IWUSR:
            path.write_bytes(b"changed")
    assert _view(base / "src") != _view(base / "ours") or not any(
        mode & stat.S_IWUSR for _, mode in files.values()
    )


def test_plain_tree_path_is_taken_and_keeps_owners(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "db.sqlite").write_bytes(b"x" * 10)
    if os.geteuid() == 0:
        os.chown(src / "db.sqlite", 12345, 12346)
    assert sdir._copy_plain_tree(src, tmp_path / "dst")
    copied = (tmp_path / "dst" / "db.sqlite").stat()
    if os.geteuid() == 0:
        assert (copied.st_uid, copied.st_gid) == (12345, 12346)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "xattr", "dir-xattr"])
def test_other_entries_go_to_cp(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    if kind == "symlink":
        (src / "l").symlink_to("f")
    elif kind == "hardlink":
        os.link(src / "f", src / "h")
    elif kind == "fifo":
        os.mkfifo(src / "p")
    else:  # an attribute (or an ACL) a command set: a fork must see it as the source does
        os.setxattr(src / "f" if kind == "xattr" else src, "user.tag", b"v")
    assert not sdir._copy_plain_tree(src, tmp_path / "unused")
    assert not (tmp_path / "unused").exists()
    sdir.copy_tree(src, tmp_path / "dst")
    if kind == "symlink":
        assert os.readlink(tmp_path / "dst" / "l") == "f"
    elif kind == "hardlink":
        assert (tmp_path / "dst" / "h").stat().st_ino == (tmp_path / "dst" / "f").stat().st_ino
    elif kind == "fifo":
        assert stat.S_ISFIFO((tmp_path / "dst" / "p").lstat().st_mode)
    else:
        tagged = tmp_path / "dst" / "f" if kind == "xattr" else tmp_path / "dst"
        assert os.getxattr(tagged, "user.tag") == b"v"


def test_large_trees_go_to_cp(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(sdir.PLAIN_TREE_MAX_ENTRIES + 1):
        (src / f"f{i}").write_text(str(i))
    assert not sdir._copy_plain_tree(src, tmp_path / "unused")
    sdir.copy_tree(src, tmp_path / "dst")
    assert _view(tmp_path / "dst") == _view(src)
