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
``org.criu.config`` annotation every runc container carries), and CRIU finds no file system to
copy, nor a network namespace to dump (:mod:`sandbox._runc_full_mounts`), and reads its
kernel-probe cache (:mod:`snapshots.criu_kdat`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox import _runc, _runc_full_mounts
from snapshots import SnapshotError, docker_full
from snapshots import directory as sdir
from snapshots.criu import explain
from snapshots.runc_checkpoint import criu_env

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
"""A restore's network namespace is new (unless the config names one: a full box's), its
loopback down (CRIU restores the sockets, not the link's state): runc runs this hook, with the
state on stdin, once the namespaces exist and before any process resumes."""
FREEZER = Path("/sys/fs/cgroup/freezer")
SHM = "tvcache-shm"
"""A checkpoint's copy of the sandbox's /dev/shm (a directory beside CRIU's images)."""
CHECKPOINTS = "runc-criu"
"""The checkpoint directories of ``full`` runc snapshots, under the snapshot dir."""


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
            if (box.box / "shm").is_dir():  # a full box's /dev/shm: copied, as its upper dir
                sdir.copy_tree(box.box / "shm", temp / SHM)
        except SnapshotError as error:  # (runc's, or the copy's)
            failure = str(error)
        box.phases["checkpoint"] = time.perf_counter() - started
    finally:
        with contextlib.suppress(_runc.RuncError, OSError):  # a dead box fails its next call
            resume(runtime, box.name)
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
    """Freeze the container ``name``: through its cgroup v1 freezer directly where it has one
    (``runc pause`` is one more process, 10-30 ms here), else ``runc pause``, again while the
    freezer gives up on a busy container (runc 1.1 polls it only briefly: "unable to
    freeze", seen under load)."""
    state = _freezer(name)
    if state is not None:
        deadline = time.monotonic() + 30
        while True:
            state.write_text("FROZEN")
            if state.read_text().strip() == "FROZEN":
                return
            if time.monotonic() > deadline:
                resume(runtime, name)
                raise _runc.RuncError(f"container {name} did not freeze within 30 s")
            time.sleep(0.001)
    for attempt in range(attempts):
        try:
            runtime.pause(name)
            return
        except _runc.RuncError as error:
            if "unable to freeze" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(0.01)


def resume(runtime: RuncRuntime, name: str) -> None:
    """Thaw the container ``name`` (as :func:`pause`: its freezer directly, else runc)."""
    state = _freezer(name)
    if state is None:
        runtime.resume(name)
    else:
        state.write_text("THAWED")


def _freezer(name: str) -> Path | None:
    """The cgroup v1 freezer state file of the container ``name`` (None on cgroup v2)."""
    path = FREEZER / _runc.CGROUP_PARENT / name / "freezer.state"
    return path if path.is_file() else None


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
    if not any(n.get("path") for n in config["linux"]["namespaces"] if n["type"] == "network"):
        config.setdefault("hooks", {})["prestart"] = [LOOPBACK_UP]
        bundle_config.write_text(json.dumps(config))
    _runc_full_mounts.shm_into(box.box, images / SHM)
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
