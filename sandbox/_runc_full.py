"""``full`` snapshots and forks on the runc path: ``runc checkpoint`` and ``runc restore``.

Why: through Docker a ``full`` snapshot or cold fork costs ~1.5 s on a loaded host (dockerd,
containerd, a copy of the checkpoint per restore); runc calls CRIU directly.

Snapshot: the container is paused (cgroup freezer), its upper directory is copied into a new
layer over its stack (the source keeps running on its own upper directory, so its files cannot
be frozen in place as at level ``fs``; a small tree costs a few ms), then ``runc checkpoint
--leave-running`` dumps the processes into the snapshot's checkpoint directory, and the
container is resumed: files and memory are those of one instant. Fork: a new box whose own
upper directory lies over that layer and the same stack, and ``runc restore`` (detached) from
the checkpoint directory, which restore only reads (many forks, no copy, nothing left in any
temporary directory). CRIU's network lock is skipped (the sandbox has no network; the
``org.criu.config`` annotation every runc container carries, see :func:`criu_annotations`).
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import _runc
from snapshots import directory as sdir
from snapshots import docker_full
from snapshots.criu import explain
from snapshots.runc_checkpoint import CRIU_CONFIG_ANNOTATION, criu_config, criu_env

if TYPE_CHECKING:  # _runc_runtime imports this module
    from sandbox._runc_runtime import Box, RuncRuntime

LOOPBACK_UP = {
    "path": "/bin/sh",
    "args": [
        "sh",
        "-c",
        'pid=$(sed -n "s/.*\\"pid\\": *\\([0-9]*\\).*/\\1/p")'
        ' && exec nsenter -t "$pid" -n ip link set lo up',
    ],
}
"""A restore's network namespace is new, its loopback down (CRIU restores the sockets, not
the link's state): runc runs this hook, with the state on stdin, once the namespaces exist
and before any process resumes."""
CHECKPOINTS = "runc-criu"
"""The checkpoint directories of ``full`` runc snapshots, under the snapshot dir."""


MOUNTS = _runc.RUNC_ROOT / "mounts"
"""Directories bound in place of the tmpfs mounts runc makes and CRIU would otherwise tar up
on every dump and restore (30-110 ms each here): ``empty`` for the masked directories
(/proc/acpi, /sys/firmware...), ``cgroup`` (one empty directory per controller) for the
tmpfs of /sys/fs/cgroup. Mounted read-only in every restored sandbox, as the tmpfs were."""
TMPFS_SKIPPED = {"/sys/fs/cgroup": "cgroup", **{path: "empty" for path in _runc.MASKED}}
"""Where runc mounts a tmpfs (a masked path that is a directory on this kernel; masked files
are binds of /dev/null) and what is bound there after a restore."""


def _externals() -> str:
    """CRIU configuration lines that make the tmpfs of :data:`TMPFS_SKIPPED` external: a dump
    records them by key (the host directory) without their content; a restore binds that
    directory (the key of each is its path: the same lines serve a dump and a restore)."""
    directories = {"empty": [], "cgroup": _cgroup_entries()}
    for name, entries in directories.items():
        _immutable_directory(MOUNTS / name, entries)
    lines = [
        f"external mnt[{path}]:{MOUNTS / name}"
        for path, name in TMPFS_SKIPPED.items()
        if Path(path).is_dir()
    ]
    lines += [f"external mnt[{MOUNTS / name}]:{MOUNTS / name}" for name in directories]
    return "".join(f"{line}\n" for line in lines)


def _cgroup_entries() -> list[tuple[str, str | None]]:
    """What runc's tmpfs at /sys/fs/cgroup holds: a directory per hierarchy (None) and a
    symlink per co-mounted controller (its target), as the host's /sys/fs/cgroup."""
    found: list[tuple[str, str | None]] = []
    with contextlib.suppress(OSError), os.scandir("/sys/fs/cgroup") as entries:
        for entry in entries:
            if entry.is_symlink():
                found.append((entry.name, os.readlink(entry.path)))
            elif entry.is_dir():
                found.append((entry.name, None))
    return found


_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def _immutable_directory(path: Path, entries: list[tuple[str, str | None]]) -> None:
    """Make ``path`` with ``entries`` (subdirectories, or symlinks to their target) and mark
    it immutable: every sandbox binds it, and root in a sandbox (no CAP_LINUX_IMMUTABLE) can
    then add nothing to it, even where the bind is writable as runc's tmpfs was."""
    if not path.is_dir():
        temp = path.with_name(sdir.temp_name(path.name))
        temp.mkdir(parents=True)
        for name, target in entries:
            if target is None:
                (temp / name).mkdir()
            else:
                (temp / name).symlink_to(target)
        try:
            os.rename(temp, path)
        except OSError:  # another process made it meanwhile: keep that one
            sdir.delete_tree(temp)
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:  # (an immutable directory cannot be renamed: marked in place, every time)
        flags = array.array("i", [0])
        fcntl.ioctl(descriptor, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_IMMUTABLE_FL:
            flags[0] |= _FS_IMMUTABLE_FL
            fcntl.ioctl(descriptor, _FS_IOC_SETFLAGS, flags, True)
    finally:
        os.close(descriptor)


def criu_annotations() -> dict[str, str]:
    """The annotation that makes runc hand CRIU its configuration: no network lock, no copy
    of the tmpfs mounts of :data:`TMPFS_SKIPPED`."""
    text = criu_config() + _externals()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = _runc.RUNC_ROOT / f"criu-{digest}.conf"  # others' tvcache versions write theirs
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(sdir.temp_name(path.name))
        temp.write_text(text)
        os.replace(temp, path)
    return {CRIU_CONFIG_ANNOTATION: str(path)}


def _criu_env() -> dict[str, str]:
    return criu_env(keep=(str(_runc.RUNC_ROOT),))


def checkpoint_path(store: Path, snapshot_id: str) -> Path:
    return store / CHECKPOINTS / docker_full.snapshot_path(Path(), snapshot_id).name


def take(
    runtime: RuncRuntime,
    box: Box,
    images: Path,
    while_paused: Callable[[], None],
) -> tuple[str, str | None]:
    """Snapshot ``box``: its files as a new layer and its processes into ``images``.

    Returns the layer and None, or the layer and why CRIU failed (the layer alone is then an
    ``fs`` snapshot; ``images`` is not left behind). The box runs on afterwards, unchanged.
    """
    if images.exists():
        raise _runc.RuncError(f"checkpoint {images} already exists", "use a new snapshot id")
    images.parent.mkdir(parents=True, exist_ok=True)
    temp = images.with_name(sdir.temp_name(images.name))
    staging = runtime.layers.root / sdir.temp_name("copy")
    failure: str | None = None
    pause(runtime, box.name)
    try:
        while_paused()
        started = time.perf_counter()
        sdir.copy_tree(box.upper, staging)
        box.phases["copy_upper"] = time.perf_counter() - started
        started = time.perf_counter()
        try:
            with docker_full._directory_times_kept(str(box.box / "rootfs")):
                dump(box, temp)
        except _runc.RuncError as error:
            failure = str(error)
        box.phases["checkpoint"] = time.perf_counter() - started
    finally:
        with contextlib.suppress(_runc.RuncError):  # a dead box fails its next call
            runtime.resume(box.name)
    try:
        below = runtime.layers.chain(box.stack[0]) if box.stack else []
        layer = runtime.layers.freeze(staging, below)
    except BaseException:
        sdir.delete_tree(staging)
        sdir.delete_tree(temp)
        raise
    if failure is None:
        os.rename(temp, images)
    else:
        sdir.delete_tree(temp)
    return layer, failure


def pause(runtime: RuncRuntime, name: str, attempts: int = 20) -> None:
    """``runc pause``, again while the cgroup v1 freezer gives up on a busy container (runc
    1.1 polls it only briefly: "unable to freeze", seen under load)."""
    for attempt in range(attempts):
        try:
            runtime.pause(name)
            return
        except _runc.RuncError as error:
            if "unable to freeze" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.01)


def dump(box: Box, images: Path) -> None:
    """``runc checkpoint --leave-running`` of ``box`` into ``images``; CRIU's reason on failure."""
    work = images.with_name(images.name + "-work")
    try:
        _runc.runc(
            "checkpoint",
            "--leave-running",
            "--image-path",
            str(images),
            "--work-path",
            str(work),
            box.name,
            env=_criu_env(),
            timeout=120,
        )
    except _runc.RuncError as error:
        reason, hint = explain(f"{error} {work / 'dump.log'}")
        raise _runc.RuncError(f"checkpoint of {box.name} failed: {reason}", hint) from error
    finally:
        sdir.delete_tree(work)


def restore(box: Box, images: Path) -> None:
    """``runc restore`` (detached) of the checkpoint ``images`` into the created bundle of
    ``box``; its pid is set. The images are only read."""
    work = box.box / "restore-work"
    bundle_config = box.box / "config.json"
    config = json.loads(bundle_config.read_text())
    config.setdefault("hooks", {})["prestart"] = [LOOPBACK_UP]
    bundle_config.write_text(json.dumps(config))
    try:
        _runc.runc(
            "restore",
            "--detach",
            "--bundle",
            str(box.box),
            "--image-path",
            str(images),
            "--work-path",
            str(work),
            "--pid-file",
            str(box.box / "pid"),
            box.name,
            log=box.box / "runc.log",
            env=_criu_env(),
            timeout=120,
        )
    except _runc.RuncError as error:
        reason, hint = explain(f"{error} {work / 'restore.log'}")
        raise _runc.RuncError(f"restore into {box.name} failed: {reason}", hint) from error
    with contextlib.suppress(OSError, ValueError):  # no ``runc state`` process needed
        box.pid = int((box.box / "pid").read_text())
    if not box.pid:
        raise _runc.RuncError(f"restored container {box.name} is not running", "see runc.log")


def sweep(store: Path, known: set[str], min_age: float = 60.0) -> list[str]:
    """Remove checkpoint directories of ``store`` that no snapshot in ``known`` (paths) names,
    older than ``min_age`` seconds (a snapshot being taken has no record yet); their names."""
    removed = []
    with contextlib.suppress(FileNotFoundError), os.scandir(store / CHECKPOINTS) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                young = time.time() - entry.stat(follow_symlinks=False).st_mtime < min_age
                if entry.path not in known and not young:
                    sdir.delete_tree(Path(entry.path))
                    removed.append(entry.name)
    return removed
