"""Fingerprints of overlay2 containers: what a container changed, relative to its root image.

A container's files are its root image's layers, the layers of the snapshots it was forked
from, and its writable upper directory. :class:`OverlayDigests` folds the layers above the root
image into one map ``path -> entry`` (type, permission bits, owner, content digest; or deleted)
with overlayfs' rules (a whiteout deletes, an opaque directory hides what is below it), then
drops every entry that equals what the root image shows at that path. So a fork and the
container it was forked from, or two histories that leave the same files in different orders,
get equal maps. Modification times count by their order (:func:`order_times`); access and
change times do not (a read would change the one, a fork the other).

Incremental: a committed layer never changes, so the fold of an image's layers is computed once
per process (bounded LRU); the upper directory is walked on each call, but a file's bytes are
read again only when its inode, size, mtime or ctime moved (ctime cannot be set from inside).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from snapshots.fingerprint import order_times

Entry = tuple[Any, ...]
"""``("dir", perms, uid, gid, opaque, mtime)``, ``("file", perms, uid, gid, size, digest,
mtime)``, ``("link", uid, gid, target, mtime)``, ``("node", type, perms, uid, gid, rdev,
mtime)`` or :data:`DELETED`; mtimes in whole seconds."""
Layer = dict[str, Entry]
DELETED: Entry = ("deleted",)
OPAQUE_XATTR = "trusted.overlay.opaque"
_PENDING = "?"
"""A file entry's digest before it is computed (root files are hashed only when compared)."""


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class FileDigests:
    """Content digests of regular files, reused while (inode, size, mtime, ctime) stay put."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[tuple[int, int, int, int], str]] = {}

    def digest(self, path: str, st: os.stat_result) -> str:
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self._known.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        value = _file_digest(path)
        self._known[path] = (signature, value)
        return value

    def forget_missing(self, seen: Iterable[str]) -> None:
        """Drop files that are gone, so the cache stays the size of the directory."""
        keep = set(seen)
        for path in [p for p in self._known if p not in keep]:
            del self._known[path]


def _file_digest(path: str) -> str:
    """A file's bytes (SQLite databases too: SQL observes their layout, see fingerprint.py)."""
    digest = hashlib.sha256()
    with open(path, "rb", opener=lambda p, f: os.open(p, f | os.O_NOFOLLOW)) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def entry_of(path: str, st: os.stat_result, files: FileDigests | None, opaque: bool) -> Entry:
    """The entry of one path of a layer; ``files=None`` leaves a file's digest pending."""
    perms, uid, gid, mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        return ("dir", perms, uid, gid, opaque, mtime)
    if stat.S_ISREG(st.st_mode):
        digest = files.digest(path, st) if files is not None else _PENDING
        return ("file", perms, uid, gid, st.st_size, digest, mtime)
    if stat.S_ISLNK(st.st_mode):
        return ("link", uid, gid, os.readlink(path), mtime)
    if _is_whiteout(st):
        return DELETED
    return ("node", stat.S_IFMT(st.st_mode), perms, uid, gid, st.st_rdev, mtime)


def scan_layer(top: str, files: FileDigests, skip: frozenset[str] = frozenset()) -> Layer:
    """Every path of one layer directory (relative, ``a/b``), except ``skip`` and below."""
    layer: Layer = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(top, rel_dir)) as entries:
            for item in entries:
                rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
                if rel in skip:
                    continue
                st = item.stat(follow_symlinks=False)
                is_dir = stat.S_ISDIR(st.st_mode)
                layer[rel] = entry_of(item.path, st, files, is_dir and _opaque(item.path))
                if is_dir:
                    stack.append(rel)
    files.forget_missing(os.path.join(top, rel) for rel in layer)
    return layer


def _path_key(rel: str) -> list[str]:
    return rel.split("/")


def _with_opaque(entry: Entry, opaque: bool) -> Entry:
    return (*entry[:4], opaque, *entry[5:])


def _hides_below(entry: Entry) -> bool:
    """Whether ``entry`` replaces what lower layers have at and under its path."""
    return entry[0] != "dir" or bool(entry[4])


def apply_layer(below: Mapping[str, Entry], layer: Mapping[str, Entry]) -> Layer:
    """``layer`` stacked on the folded map ``below``, by overlayfs' rules."""
    result = dict(below)
    for rel in sorted(layer, key=_path_key):
        entry = layer[rel]
        if _hides_below(entry):
            prefix = rel + "/"
            for gone in [key for key in result if key.startswith(prefix)]:
                del result[gone]
        else:
            previous = result.get(rel)
            if previous is not None and _hides_below(previous):
                entry = _with_opaque(entry, True)  # a directory over a non-directory: empty
        result[rel] = entry
    return result


class RootView:
    """What the root image shows at a path, read from its layer directories (top first)."""

    def __init__(self, layers: list[str]) -> None:
        self.layers = layers
        self._entries: dict[str, Entry | None] = {}
        self._files = FileDigests()

    def entry(self, rel: str) -> Entry | None:
        """The visible entry (a file's digest pending), or None where nothing is visible."""
        if rel not in self._entries:
            self._entries[rel] = self._lookup(rel)
        return self._entries[rel]

    def _lookup(self, rel: str) -> Entry | None:
        parts = rel.split("/")
        for layer in self.layers:
            full = os.path.join(layer, rel)
            try:
                st = os.lstat(full)
            except OSError:
                pass
            else:
                return None if _is_whiteout(st) else entry_of(full, st, None, False)
            prefix = layer
            for part in parts[:-1]:  # does this layer hide the path in the layers below?
                prefix = os.path.join(prefix, part)
                try:
                    st = os.lstat(prefix)
                except OSError:
                    break
                if not stat.S_ISDIR(st.st_mode) or _opaque(prefix):
                    return None
        return None

    def shows(self, rel: str, entry: Entry) -> bool:
        """Whether the root image already shows ``entry`` at ``rel`` (DELETED: shows nothing)."""
        seen = self.entry(rel)
        if entry == DELETED or seen is None:
            return entry == DELETED and seen is None
        if entry[0] == "dir":  # opaque only matters for what lies beneath
            return _with_opaque(seen, False) == _with_opaque(entry, False)
        if seen[0] != "file" or entry[0] != "file":
            return seen == entry
        if seen[:5] != entry[:5] or seen[6] != entry[6]:
            return False
        for layer in self.layers:
            full = os.path.join(layer, rel)
            if os.path.lexists(full):
                return bool(self._files.digest(full, os.lstat(full)) == entry[5])
        return False


def normalize(folded: Mapping[str, Entry], root: RootView) -> Layer:
    """``folded`` without the entries the root image already shows (where nothing hides it)."""
    result: Layer = {}
    hidden: list[str] = []  # prefixes under which the root image does not show through
    for rel in sorted(folded, key=_path_key):
        entry = folded[rel]
        covered = any(rel.startswith(prefix) for prefix in hidden)
        if entry[0] == "dir" and entry[4]:
            seen = root.entry(rel)
            if seen is None or seen[0] != "dir":
                entry = _with_opaque(entry, False)  # nothing of the root lies beneath to hide
        if _hides_below(entry):
            hidden.append(rel + "/")
        if covered or not root.shows(rel, entry):
            result[rel] = entry
    return result


def map_digest(changes: Mapping[str, Entry], times_since: int) -> str:
    """The digest of a normalized map, its clock times by rank (see :func:`order_times`)."""
    mtimes = {rel: entry[-1] for rel, entry in changes.items() if entry != DELETED}
    times = order_times(mtimes, times_since, int(time.time()) + 1)
    digest = hashlib.sha256(b"tvcache-overlay-v2\0")
    for rel in sorted(changes):
        entry = changes[rel]
        held = entry if entry == DELETED else (*entry[:-1], times[rel])
        digest.update(repr((rel, held)).encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


class OverlayDigests:
    """Fingerprints of containers' files, sharing the work on committed layers and root images.

    Thread-safe: sandboxes of one backend fingerprint concurrently.
    """

    def __init__(self, cached_images: int = 64) -> None:
        self._lock = threading.Lock()
        self._roots: dict[tuple[str, ...], RootView] = {}
        self._folds: OrderedDict[tuple[str, ...], Layer] = OrderedDict()
        self._cached_images = cached_images

    def root(self, layers: list[str]) -> RootView:
        with self._lock:
            return self._roots.setdefault(tuple(layers), RootView(layers))

    def folded(self, layers: list[str], skip: frozenset[str]) -> Layer:
        """The fold of committed layers (bottom first, at least one) above a root image, cached.

        A committed layer never changes: its files are read once, with a throwaway cache."""
        key = tuple(layers)
        with self._lock:
            if key in self._folds:
                self._folds.move_to_end(key)
                return self._folds[key]
        below = self.folded(layers[:-1], skip) if len(layers) > 1 else {}
        with self._lock:
            result = apply_layer(below, scan_layer(layers[-1], FileDigests(), skip))
            self._folds[key] = result
            while len(self._folds) > self._cached_images:
                self._folds.popitem(last=False)
        return result

    def digest(
        self,
        root_layers: list[str],
        snapshot_layers: list[str],
        upper: str,
        upper_files: FileDigests,
        skip: frozenset[str] = frozenset(),
        times_since: int = 0,
    ) -> str:
        """The digest of a container's changes: ``snapshot_layers`` bottom first, then upper.

        ``times_since``: when the root image was made; later times came from the clock.
        """
        below = self.folded(snapshot_layers, skip) if snapshot_layers else {}
        changes = apply_layer(below, scan_layer(upper, upper_files, skip))
        return map_digest(normalize(changes, self.root(root_layers)), times_since)


def split_layers(
    container: Mapping[str, str], root: Mapping[str, str]
) -> tuple[list[str], list[str], str] | None:
    """(root layers top first, snapshot layers bottom first, upper) from GraphDriver data.

    None when the container's layers do not sit on the root image's (a flattened snapshot).
    """

    def chain(data: Mapping[str, str]) -> list[str]:
        lower = data.get("LowerDir") or ""
        return [data["UpperDir"], *(d for d in lower.split(":") if d)]

    root_chain = chain(root)
    lowers = [d for d in (container.get("LowerDir") or "").split(":") if d]
    lowers = [d for d in lowers if not d.endswith("-init/diff")]
    if len(lowers) < len(root_chain) or lowers[len(lowers) - len(root_chain) :] != root_chain:
        return None
    above = lowers[: len(lowers) - len(root_chain)]
    return root_chain, above[::-1], container["UpperDir"]
