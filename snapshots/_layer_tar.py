"""An overlay upper directory as an OCI layer tar, and back.

Overlayfs marks a deleted file with a whiteout (a character device 0/0) and a directory whose
lower contents are hidden with the ``trusted.overlay.opaque`` xattr; OCI layers say the same
with ``.wh.<name>`` and ``.wh..wh..opq`` files, which any tar carries. Ownership is numeric,
mode bits (setuid too) and mtimes are kept: the layer is a container's file system.

A tar from a registry is untrusted bytes until proven otherwise: its digest is checked before
this module reads it, and :func:`unpack` still refuses any entry that would land (or link)
outside the target, and device files other than whiteouts.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from snapshots._errors import SnapshotError
from snapshots.layers import OPAQUE

WHITEOUT = ".wh."
OPAQUE_MARK = ".wh..wh..opq"
_DONE = b""


def _info(name: str, mode: int = 0o600) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _entries(tar: tarfile.TarFile, diff: Path) -> None:
    """Add ``diff``'s tree to ``tar``, parents first, names sorted (the same tree gives the
    same bytes, so the same digest)."""
    for base, dirs, files in os.walk(diff):
        dirs.sort()
        rel = os.path.relpath(base, diff)
        for name in sorted([*dirs, *files]):
            path = os.path.join(base, name)
            arc = name if rel == "." else f"{rel}/{name}"
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                tar.addfile(_info(f"{os.path.dirname(arc)}/{WHITEOUT}{name}".lstrip("/")))
                continue
            info = tar.gettarinfo(path, arc)
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
            if stat.S_ISDIR(st.st_mode) and _opaque(path):
                tar.addfile(_info(f"{arc}/{OPAQUE_MARK}"))


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE, follow_symlinks=False) == b"y"
    except OSError:
        return False


class _Pipe:
    """A file ``tarfile`` writes to from one thread while another reads its chunks."""

    def __init__(self, chunk: int) -> None:
        self._chunk = chunk
        self._buffer = bytearray()
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=4)
        self.written = 0
        self.abandoned = threading.Event()

    def write(self, data: bytes) -> int:
        if self.abandoned.is_set():  # the reader stopped (an upload failed): stop tarring
            raise OSError("layer tar abandoned by its reader")
        self._buffer += data
        self.written += len(data)
        while len(self._buffer) >= self._chunk:
            self.queue.put(bytes(self._buffer[: self._chunk]))
            del self._buffer[: self._chunk]
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        if self._buffer:
            self.queue.put(bytes(self._buffer))
            self._buffer.clear()


def tar_chunks(diff: Path, chunk: int = 8 * 1024 * 1024) -> Iterator[bytes]:
    """The OCI layer tar of ``diff`` in chunks of ``chunk`` bytes, made as they are read (a
    big layer is never whole in memory or on disk)."""
    pipe = _Pipe(chunk)

    def produce() -> None:
        try:
            with tarfile.open(fileobj=pipe, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                _entries(tar, diff)
            pipe.flush()
            pipe.queue.put(_DONE)
        except BaseException as error:  # handed to the reader, raised there
            pipe.queue.put(error)

    thread = threading.Thread(target=produce, name="tvcache-layer-tar", daemon=True)
    thread.start()
    try:
        while True:
            item = pipe.queue.get()
            if isinstance(item, BaseException):
                raise SnapshotError(f"reading layer {diff} failed: {item}") from item
            if item == _DONE:
                return
            yield item
    finally:  # done, failed, or closed early: the producer must not block on a full queue
        pipe.abandoned.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                pipe.queue.get(timeout=0.1)
        thread.join()


def _inside(target: Path, path: str) -> bool:
    real = os.path.realpath(path)
    return real == str(target) or real.startswith(str(target) + os.sep)


def unpack(source: Path, target: Path) -> None:
    """Unpack the OCI layer tar ``source`` into the new directory ``target`` as an overlay
    upper directory (whiteouts back to devices, opaque markers back to xattrs)."""
    target.mkdir()
    target = target.resolve()

    def accept(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        name = os.path.normpath(member.name)
        if name.startswith(("/", "..")) or os.path.isabs(member.name) or "/../" in f"/{name}/":
            raise SnapshotError(f"layer entry {member.name!r} points outside the layer: refused")
        path = os.path.join(dest, name)
        if not _inside(target, os.path.dirname(path)):
            raise SnapshotError(f"layer entry {member.name!r} goes through a link: refused")
        base = os.path.basename(name)
        if base == OPAQUE_MARK:
            os.setxattr(os.path.dirname(path), OPAQUE, b"y", follow_symlinks=False)
            return None
        if base.startswith(WHITEOUT):
            os.mknod(os.path.join(os.path.dirname(path), base[len(WHITEOUT) :]), stat.S_IFCHR, 0)
            return None
        if member.isdev():
            raise SnapshotError(f"layer entry {member.name!r} is a device file: refused")
        if member.islnk() and not _inside(target, os.path.join(dest, member.linkname)):
            raise SnapshotError(f"layer hard link {member.name!r} leaves the layer: refused")
        return member

    with tarfile.open(source, mode="r:") as tar:
        tar.extractall(target, numeric_owner=True, filter=accept)
