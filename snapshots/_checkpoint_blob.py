"""A checkpoint directory (CRIU's images of a ``full`` snapshot) to and from a registry as a blob.

Why: a ``full`` snapshot is an image (or a layer stack) plus a checkpoint directory on the disk
of the host that took it; a fork on another host needs both. The directory goes up as one tar
(:func:`~snapshots._layer_tar.tar_chunks`, streamed) in a manifest tagged with the snapshot id
in its own repository, beside the snapshot's image or stack. A pull writes the blob beside the
store, verifies its digest, unpacks it under a temporary name and renames it into place whole.

A handle records the checkpoint by its name relative to the backend's snapshot directory
(:func:`name_in`), which every host maps onto its own (:func:`locate`); records from before
keep an absolute path, which still works on the host that wrote it. Used by both ``full``
paths: Docker's (``docker_full``) and runc's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from snapshots import directory as sdir
from snapshots._errors import SnapshotError
from snapshots._layer_tar import tar_chunks, unpack
from snapshots._registry_stack import CONFIG_TYPE, CREATED_KEY, LAYER_TYPE, Transfer, read_config
from snapshots.registry import MANIFEST_TYPE, Descriptor, Registry

CHECKPOINTS = "tvcache/checkpoints"
"""The repository checkpoint manifests are pushed to, tagged with their snapshot id."""
NAME_KEY = "org.tvcache.checkpoint"


def name_in(store: Path, directory: Path) -> str:
    """What a handle records of checkpoint ``directory``: its path relative to ``store``."""
    relative = os.path.relpath(directory, store)
    if relative.startswith(".."):
        raise SnapshotError(f"checkpoint {directory} is not inside the snapshot store {store}")
    return relative


def locate(store: Path, recorded: object) -> Path | None:
    """Where the checkpoint a handle records is on this host: under ``store`` for a relative
    name, as written for an absolute path (a record from before: its own host only); None
    when the handle records none or a name that leaves ``store``."""
    if not recorded:
        return None
    text = str(recorded)
    if os.path.isabs(text):
        return Path(text)
    if ".." in Path(text).parts:
        return None
    return store / text


def push(registry: Registry, store: Path, name: str, tag: str) -> Transfer:
    """Push checkpoint ``store/name`` as manifest ``tag`` of ``registry``; what was sent."""
    started = time.perf_counter()
    source = store / name
    if not source.is_dir():
        raise SnapshotError(f"checkpoint {source} is gone: nothing to push")
    digest, size = registry.upload(tar_chunks(source))
    config = json.dumps({"tvcache": 1, "snapshot": tag, "checkpoint": name}, sort_keys=True)
    config_digest, config_size = registry.push_blob(config.encode())
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": Descriptor(CONFIG_TYPE, config_digest, config_size).to_dict(),
        "layers": [Descriptor(LAYER_TYPE, digest, size, {NAME_KEY: name}).to_dict()],
        "annotations": {CREATED_KEY: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    registry.put_manifest(tag, manifest)
    return Transfer(1, size, 0, time.perf_counter() - started)


def pull(registry: Registry, store: Path, name: str, tag: str) -> Transfer:
    """Bring checkpoint ``tag`` into ``store/name``; what was received. Raises a
    :class:`~snapshots.registry.BlobMissingError` when the registry lacks it, and leaves
    nothing half-written whatever fails."""
    started = time.perf_counter()
    target = locate(store, name)
    if target is None or os.path.isabs(name):
        raise SnapshotError(f"checkpoint name {name!r} does not name a place in {store}")
    manifest, _ = registry.get_manifest(tag)
    config = read_config(registry, manifest)
    blobs = [Descriptor.from_dict(d) for d in manifest.get("layers", [])]
    if config.get("snapshot") != tag or len(blobs) != 1:
        raise SnapshotError(f"checkpoint manifest {tag} is not one checkpoint of snapshot {tag}")
    staging = target.parent / sdir.temp_name(target.name)  # a dead pull's is swept
    staging.mkdir(parents=True)
    try:
        with (staging / "blob.tar").open("w+b") as handle:
            registry.fetch_blob(blobs[0].digest, handle)  # raises on a digest mismatch
        unpack(staging / "blob.tar", staging / "checkpoint")
        try:
            os.rename(staging / "checkpoint", target)
        except OSError:
            if not target.is_dir():  # else another pull got there first: as good
                raise
    finally:
        sdir.delete_tree(staging)
    return Transfer(1, blobs[0].size, 0, time.perf_counter() - started)
