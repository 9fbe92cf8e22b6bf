"""``full`` snapshots of Docker containers: the file system plus the processes, through the Engine
API's checkpoint endpoints (which run CRIU), captured at one instant and forkable many times.

Capture: pause → checkpoint (``Exit: false``, images into the snapshot store, where they outlive
the source container) → commit without pausing again → unpause. File system and memory are
frozen together, so they agree. When CRIU fails, the commit still happens and the handle says
``fs`` (and why): never a snapshot that claims processes it does not hold.

Fork: a container from the committed image, the checkpoint hard-linked (copied across mounts)
into ``<DockerRootDir>/containers/<id>/checkpoints/<name>/`` (Docker refuses custom directories
on start), a file unique to the fork written into the copy (identical copies restored at the
same time collide in containerd's content store), then ``start?checkpoint=<name>``.

Leak: containerd unpacks the checkpoint of every restore into a ``ctrd-checkpoint*`` directory of
its temporary directory and never removes it. The fork's marker file goes along, so the copy is
found by its marker and removed once the restore returns (:func:`start`); :func:`sweep_unpacked`
removes copies a killed process left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from snapshots import _checkpoint_blob as checkpoint_blob
from snapshots import directory as sdir
from snapshots import docker_fs
from snapshots._errors import SnapshotError
from snapshots._handle import SnapshotHandle
from snapshots.criu import explain
from snapshots.docker_fs import DockerAPI

CHECKPOINT = "tvcache"
"""The checkpoint's name, inside the snapshot directory and inside each fork's container."""
MARKER = "tvcache-fork-id"
"""In every installed copy: ``<container> <nonce> <store>``, which also names containerd's copy."""
UNPACKED_PREFIX = "ctrd-checkpoint"
"""containerd's unpacked copy of a checkpoint it restores (``os.MkdirTemp`` in its temp dir)."""
RECORD = "snapshot.json"
"""Beside the checkpoint: the labels of the snapshot, so that reconcile can judge the directory."""


def snapshot_path(store: Path, snapshot_id: str) -> Path:
    return store / docker_fs.image_tag(snapshot_id)


def _checkpoint(api: DockerAPI, container: str, directory: Path) -> None:
    response = api._post_json(
        api._url("/containers/{0}/checkpoints", container),
        data={"CheckpointID": CHECKPOINT, "Exit": False, "CheckpointDir": str(directory)},
    )
    if response.status_code >= 300:
        message = _message(response)
        reason, hint = explain(message)
        raise SnapshotError(f"checkpoint of {container[:12]} failed: {reason}", hint)


@contextlib.contextmanager
def _directory_times_kept(merged: str) -> Iterator[None]:
    """Put back the times of the top-level directories after a dump.

    CRIU's dump (4.2 through Docker 20.10) creates and removes a file in the container's
    ``/tmp``: the directory's modification time moves, the source and every fork would differ
    from the state that was checkpointed, and fingerprints see it. ``merged`` is the
    container's overlay mount on the host ("" for another storage driver: nothing to do).
    """
    before: dict[str, tuple[int, int]] = {}
    if merged:
        with contextlib.suppress(OSError), os.scandir(merged) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    before[entry.path] = (st.st_atime_ns, st.st_mtime_ns)
    try:
        yield
    finally:
        for path, times in before.items():
            with contextlib.suppress(OSError):
                if os.lstat(path).st_mtime_ns != times[1]:
                    os.utime(path, ns=times, follow_symlinks=False)


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return str(response.text)


def take(
    api: DockerAPI,
    container: str,
    snapshot_id: str,
    *,
    store: Path,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    while_paused: Callable[[], None],
    flatten_depth: int = docker_fs.FLATTEN_DEPTH,
) -> SnapshotHandle:
    """A ``full`` snapshot, or an ``fs`` one whose ``full_failure`` says why CRIU could not.

    ``while_paused`` runs with every process frozen, just before the dump (the caller empties
    files that checkpointed processes hold open, so forks can match their size).
    """
    final = snapshot_path(store, snapshot_id)
    if final.exists():
        raise SnapshotError(f"snapshot {snapshot_id} already exists in {store}", "use a new id")
    ref = docker_fs.image_ref(snapshot_id)
    info = api.inspect_container(container)
    parent = str(info["Image"])
    merged = str(((info.get("GraphDriver") or {}).get("Data") or {}).get("MergedDir") or "")
    temp = store / sdir.temp_name(final.name)
    temp.mkdir(parents=True)
    failure: str | None = None
    try:
        docker_fs.pause(api, container)
        try:
            while_paused()
            try:
                with _directory_times_kept(merged):
                    _checkpoint(api, container, temp)
            except SnapshotError as error:
                failure = str(error)
            image = docker_fs.commit(api, container, ref, labels, pause=False)
        finally:
            api.unpause(container)
        layer = docker_fs.finish(api, image, parent, ref, labels, flatten_depth)
        if failure is not None:
            sdir.delete_tree(temp)
            return docker_fs.handle(
                snapshot_id, "fs", ref, layer, {**meta, "full_failure": failure}
            )
        (temp / RECORD).write_text(json.dumps({"labels": dict(labels)}, sort_keys=True))
        os.rename(temp, final)
    except BaseException:
        sdir.delete_tree(temp)
        raise
    checkpoint_bytes = sdir.size_on_disk(final)
    name = checkpoint_blob.name_in(store, final)  # the same on every host
    full_meta = {**meta, "checkpoint": name, "checkpoint_bytes": checkpoint_bytes}
    return docker_fs.handle(snapshot_id, "full", ref, layer, full_meta, checkpoint_bytes)


def install(source: Path, docker_root: Path, container: str, store: Path | None = None) -> str:
    """Put a private copy of the checkpoint ``source`` where Docker restores it from; return the
    text of its marker (which :func:`start` needs to find containerd's copy).

    Hard links when the store shares a mount with ``docker_root`` (restore only reads the
    images), else copies. ``store`` (the snapshot store) goes in the marker for the sweep.
    """
    target = docker_root / "containers" / container / "checkpoints" / CHECKPOINT
    if not (source / "inventory.img").is_file():
        raise SnapshotError(
            f"checkpoint files are missing from {source}",
            "the snapshot was damaged; its forks start from its fs state",
        )
    linked = True
    for dirpath, _, filenames in os.walk(source):
        out = target / os.path.relpath(dirpath, source)
        out.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if linked:
                try:
                    os.link(os.path.join(dirpath, name), out / name)
                    continue
                except OSError as error:
                    if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    linked = False
            shutil.copy2(os.path.join(dirpath, name), out / name)
    marker = f"{container} {uuid.uuid4().hex} {store or ''}".rstrip() + "\n"
    (target / MARKER).write_text(marker)
    return marker


def start(api: DockerAPI, container: str, marker: str | None = None) -> None:
    """Start ``container`` from its installed checkpoint; raise with CRIU's reason on failure.

    ``marker`` (from :func:`install`): containerd's unpacked copy of the checkpoint is removed
    afterwards, whether the restore worked or not (nothing else ever removes it).
    """
    before = set(_unpacked()) if marker else set()
    try:
        response = api._post(
            api._url("/containers/{0}/start", container), params={"checkpoint": CHECKPOINT}
        )
    finally:
        if marker:
            for path in _unpacked():
                if path not in before and _marker(path) == marker:
                    shutil.rmtree(path, ignore_errors=True)
    if response.status_code >= 300:
        reason, hint = explain(_message(response))
        raise SnapshotError(f"restore into {container[:12]} failed: {reason}", hint)


_temp_dirs: list[Path] = []


def containerd_temp_dirs() -> list[Path]:
    """Where containerd unpacks checkpoints: ``$XDG_RUNTIME_DIR``, else ``$TMPDIR``, else
    ``/tmp`` of each running containerd, seen through ``/proc/<pid>/root``; ``/tmp`` when no
    containerd can be read (another host's daemon: nothing of ours to find). Looked up once
    (every restore asks), again when a directory found is gone (containerd restarted)."""
    if _temp_dirs and all(path.is_dir() for path in _temp_dirs):
        return list(_temp_dirs)
    found: list[Path] = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "containerd":
            continue
        try:
            env = process.environ()
        except psutil.Error:
            continue
        temp = env.get("XDG_RUNTIME_DIR") or env.get("TMPDIR") or "/tmp"
        path = Path(f"/proc/{process.pid}/root{temp}")
        with contextlib.suppress(OSError):
            resolved = Path(temp) if os.path.samefile(path, temp) else path
            if resolved not in found:
                found.append(resolved)
    _temp_dirs[:] = found or [Path("/tmp")]
    return list(_temp_dirs)


def _unpacked(temp_dirs: Collection[Path] | None = None) -> list[Path]:
    paths: list[Path] = []
    for temp in containerd_temp_dirs() if temp_dirs is None else temp_dirs:
        with contextlib.suppress(OSError), os.scandir(temp) as entries:
            paths.extend(
                Path(e.path) for e in entries if e.name.startswith(UNPACKED_PREFIX) and e.is_dir()
            )
    return paths


def _marker(unpacked: Path) -> str | None:
    try:
        return (unpacked / MARKER).read_text()
    except OSError:
        return None


def sweep_unpacked(
    store: Path,
    live: Collection[str],
    temp_dirs: Collection[Path] | None = None,
    min_age: float = 60.0,
) -> list[str]:
    """Remove containerd's unpacked checkpoints whose marker names ``store`` and a container not
    in ``live`` (container ids): copies a killed process never removed. Copies younger than
    ``min_age`` seconds stay (their container may have been created after ``live`` was listed).
    Returns their names."""
    removed = []
    for path in _unpacked(temp_dirs):
        fields = (_marker(path) or "").split(maxsplit=2)
        if len(fields) < 3 or fields[2].strip() != str(store) or fields[0] in live:
            continue
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime >= min_age:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    return removed


def delete(handle: SnapshotHandle, store: Path) -> None:
    """Remove the checkpoint directory of a ``full`` handle from ``store``. Idempotent."""
    checkpoint = checkpoint_blob.locate(store, handle.meta.get("checkpoint"))
    if checkpoint is not None:
        sdir.delete_tree(checkpoint)


def sweep(
    store: Path, known: Collection[str], orphaned: Callable[[Mapping[str, str]], bool]
) -> list[str]:
    """Remove checkpoint directories of ``store`` that no snapshot id in ``known`` names and
    ``orphaned`` accepts by their labels, and temp entries of dead processes. Directories
    without a tvcache record are left alone. Returns the removed names.
    """
    names = {snapshot_path(store, snapshot_id).name for snapshot_id in known}
    removed = []
    for entry in sorted(store.iterdir()):
        if entry.name.startswith(sdir.TMP_PREFIX):
            pid = sdir.temp_owner_pid(entry.name)
            doomed = pid is None or (pid != os.getpid() and not psutil.pid_exists(pid))
        elif entry.name in names:
            continue
        else:
            try:
                labels = json.loads((entry / RECORD).read_text())["labels"]
            except (OSError, ValueError, KeyError):
                continue
            doomed = orphaned(labels)
        if doomed:
            sdir.delete_tree(entry)
            removed.append(entry.name)
    return removed


def can_link(store: Path, docker_root: Path) -> bool:
    """Whether checkpoints in ``store`` can be hard-linked into ``docker_root`` (same mount)."""
    probe = store / sdir.temp_name("link-probe")
    target = docker_root / f".tvcache-link-probe-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        os.link(probe, target)
        return True
    except OSError:
        return False
    finally:
        for path in (probe, target):
            path.unlink(missing_ok=True)
