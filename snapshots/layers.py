"""``fs`` snapshots as stacked overlay layers: freeze an upper directory, never copy it.

A snapshot of a runc sandbox renames the sandbox's upper directory into ``root/<id>/diff``
(one ``rename``, whatever was written) and the sandbox goes on over a new, empty upper
directory stacked on it; forks mount their own upper directory over the same stack. A layer
records the layers below it (``chain``, top first), so a stack is named by its top layer.

Sharing: each layer belongs to the one snapshot that froze it, so the byte budget counts its
bytes once, however many forks and later snapshots stack on it. Deleting a snapshot marks
its layer ``deleted``; :meth:`LayerStore.gc` removes a deleted layer once no live layer's
chain and no live sandbox (``users``) needs it. Stacks deeper than the flatten depth are
merged into one layer (``flat``) by :func:`merge`, which forks then use instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from snapshots._errors import SnapshotError

OPAQUE = "trusted.overlay.opaque"
MIN_LAYER_BYTES = 4096


def _read_json(path: Path, default: object) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def tree_bytes(top: Path) -> int:
    """Bytes a directory tree occupies (blocks, not lengths: holes are free, dirs are not)."""
    total = 0
    for base, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(base, name)).st_blocks * 512
    return total


class LayerStore:
    """Layer directories under ``root``; thread-safe; shared by processes through the disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def diff(self, layer: str) -> Path:
        return self.root / layer / "diff"

    def has(self, layer: str) -> bool:
        return self.diff(layer).is_dir()

    def chain(self, layer: str) -> list[str]:
        """``layer`` and the layers below it, top first; a merged stack's one layer if any."""
        flat = (self.root / layer / "flat").exists()
        if flat:
            flat_id = (self.root / layer / "flat").read_text().strip()
            if self.diff(flat_id).is_dir():
                return [flat_id]
        below = _read_json(self.root / layer / "chain", None)
        if not isinstance(below, list) or not self.has(layer):
            raise SnapshotError(
                f"layer {layer} is missing from {self.root}",
                "drop the snapshot's record (reconcile reports it as missing)",
            )
        return [layer, *(str(x) for x in below)]

    def _below(self, layer: str) -> list[str]:
        """The layers ``layer`` was frozen over (not its flattened replacement)."""
        below = _read_json(self.root / layer / "chain", [])
        return [str(x) for x in below] if isinstance(below, list) else []

    def freeze(self, upper: Path, below: list[str]) -> str:
        """Make ``upper`` (no longer mounted) a read-only layer over ``below``; its id."""
        layer = uuid.uuid4().hex[:20]
        directory = self.root / layer
        directory.mkdir()
        (directory / "chain").write_text(json.dumps(below))
        os.rename(upper, directory / "diff")
        return layer

    def size(self, layer: str) -> int:
        return max(tree_bytes(self.diff(layer)), MIN_LAYER_BYTES)

    def delete(self, layer: str) -> None:
        """The snapshot that froze ``layer`` is gone: gc may remove it once nothing needs it."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / layer / "deleted").touch()

    def layers(self) -> list[str]:
        return sorted(e.name for e in self.root.iterdir() if e.is_dir() and len(e.name) == 20)

    def needed(self, users: Iterable[str], layers: Iterable[str] | None = None) -> set[str]:
        """Layers a live snapshot's stack or a live sandbox (``users``) reads, among
        ``layers`` (default: all there are now)."""
        keep = set(users)
        for layer in self.layers() if layers is None else layers:
            if not (self.root / layer / "deleted").exists():
                keep.add(layer)
                with contextlib.suppress(SnapshotError):
                    keep.update(self.chain(layer))
                keep.update(self._below(layer))
        return keep

    def gc(self, users: Iterable[str], *, min_age: float = 0.0) -> list[str]:
        """Remove layers nothing needs (older than ``min_age`` seconds); their ids."""
        removed = []
        with self._lock:
            # one listing for both: a layer frozen after it (by another thread) is not judged
            present = self.layers()
            needed = self.needed(users, present)
            for layer in present:
                directory = self.root / layer
                try:
                    young = time.time() - directory.lstat().st_mtime < min_age
                except FileNotFoundError:
                    continue
                if layer not in needed and not young:
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(layer)
        return removed

    def flatten(self, layer: str) -> str:
        """Merge the stack of ``layer`` into one new layer, which forks of it use from now on."""
        stack = self.chain(layer)
        flat = uuid.uuid4().hex[:20]
        staging = self.root / f".tmp-{flat}"
        staging.mkdir()
        merge([self.diff(x) for x in reversed(stack)], staging / "diff")
        (staging / "chain").write_text("[]")
        (staging / "deleted").touch()  # owned by no snapshot: lives while ``layer`` points at it
        os.rename(staging, self.root / flat)
        (self.root / layer / "flat").write_text(flat)
        return flat


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _remove(path: Path) -> None:
    found = _lstat(path)
    if found is not None and stat.S_ISDIR(found.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def merge(diffs: list[Path], target: Path) -> None:
    """Fold overlay upper directories (bottom first) into one, with overlayfs' rules: an upper
    entry replaces a lower one, a whiteout stays a whiteout (it hides the image below), an
    opaque directory drops what the layers below put there."""
    target.mkdir()
    for diff in diffs:
        _merge_dir(diff, target)


def _merge_dir(source: Path, target: Path) -> None:
    for entry in os.scandir(source):
        src, dst = Path(entry.path), target / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            opaque = _opaque(src)
            below = _lstat(dst)  # never follow: a lower layer's symlink may point anywhere
            if below is not None and (opaque or not stat.S_ISDIR(below.st_mode)):
                _remove(dst)
                below = None
            if below is None:
                dst.mkdir()
            _merge_dir(src, dst)
            shutil.copystat(src, dst, follow_symlinks=False)  # after the children: their mtime
            os.lchown(dst, st.st_uid, st.st_gid)
            if opaque:
                os.setxattr(dst, OPAQUE, b"y", follow_symlinks=False)
            continue
        with contextlib.suppress(FileNotFoundError):
            _remove(dst)
        if _is_whiteout(st):
            os.mknod(dst, stat.S_IFCHR | 0o000, 0)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(src, dst, follow_symlinks=False)
        else:
            os.mknod(dst, st.st_mode, st.st_rdev)
        os.lchown(dst, st.st_uid, st.st_gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))  # chown cleared setuid bits
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
