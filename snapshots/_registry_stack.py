"""Layer-stack snapshots (:mod:`snapshots.layers`) to and from an OCI registry.

A snapshot is one manifest, tagged with its snapshot id, listing its stack's layers bottom
first as OCI layer tars; its config blob names the tvcache layer ids and the image. A layer's
digest is remembered beside it (``blob.json``), so a layer many snapshots share is tarred and
uploaded once (the registry is asked first). A pull writes each missing layer beside the store
under a temporary name and renames it into place once whole and verified, lowest first, the
snapshot's own layer last: a fork sees the whole stack or none of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapshots._errors import SnapshotError
from snapshots._layer_tar import tar_chunks, unpack
from snapshots.layers import LayerStore
from snapshots.registry import MANIFEST_TYPE, Descriptor, Registry

log = logging.getLogger(__name__)

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.tvcache.snapshot.config.v1+json"
LAYER_KEY = "org.tvcache.layer"
CREATED_KEY = "org.opencontainers.image.created"


@dataclass(frozen=True, slots=True)
class Transfer:
    """What one push or pull moved: blobs and bytes sent or received, and those skipped."""

    blobs: int
    bytes: int
    skipped: int
    seconds: float


def _blob_file(layers: LayerStore, layer: str) -> Path:
    return layers.root / layer / "blob.json"


def _known_blob(layers: LayerStore, layer: str) -> Descriptor | None:
    try:
        data = json.loads(_blob_file(layers, layer).read_text())
        return Descriptor(LAYER_TYPE, str(data["digest"]), int(data["size"]), {LAYER_KEY: layer})
    except (OSError, ValueError, KeyError):
        return None


def _remember(layers: LayerStore, layer: str, found: Descriptor) -> None:
    with contextlib.suppress(OSError):
        _blob_file(layers, layer).write_text(
            json.dumps({"digest": found.digest, "size": found.size})
        )


def push(registry: Registry, layers: LayerStore, top: str, tag: str, image: str) -> Transfer:
    """Push the stack of layer ``top`` as manifest ``tag``; what was sent."""
    started = time.perf_counter()
    stack = layers.chain(top)  # top first; one flattened layer when merged
    sent = sent_bytes = skipped = 0
    descriptors: list[Descriptor] = []
    for layer in reversed(stack):
        known = _known_blob(layers, layer)
        if known is not None and registry.has_blob(known.digest):
            descriptors.append(known)
            skipped += 1
            continue
        digest, size = registry.upload(tar_chunks(layers.diff(layer)))
        found = Descriptor(LAYER_TYPE, digest, size, {LAYER_KEY: layer})
        _remember(layers, layer, found)
        descriptors.append(found)
        sent, sent_bytes = sent + 1, sent_bytes + size
    config = json.dumps(
        {"tvcache": 1, "snapshot": tag, "top": top, "stack": stack, "image": image},
        sort_keys=True,
    ).encode()
    config_digest, config_size = registry.push_blob(config)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": Descriptor(CONFIG_TYPE, config_digest, config_size).to_dict(),
        "layers": [d.to_dict() for d in descriptors],
        "annotations": {CREATED_KEY: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
    registry.put_manifest(tag, manifest)
    return Transfer(sent, sent_bytes, skipped, time.perf_counter() - started)


def read_config(registry: Registry, manifest: dict[str, Any]) -> dict[str, Any]:
    """The tvcache config a snapshot manifest points at (verified)."""
    config = Descriptor.from_dict(manifest["config"])
    if config.media_type != CONFIG_TYPE:
        raise SnapshotError(f"manifest config is {config.media_type}, not a tvcache snapshot")
    found = json.loads(registry.blob_bytes(config.digest))
    if not isinstance(found, dict):
        raise SnapshotError("snapshot config is not a JSON object")
    return found


def pull(registry: Registry, layers: LayerStore, tag: str) -> Transfer:
    """Bring the stack of snapshot ``tag`` into ``layers``; what was received. Raises a
    :class:`~snapshots.registry.BlobMissingError` (a ``SnapshotError``) when the registry
    does not have it, and leaves nothing half-written whatever fails."""
    started = time.perf_counter()
    manifest, _ = registry.get_manifest(tag)
    config = read_config(registry, manifest)
    top, stack = str(config["top"]), [str(x) for x in config["stack"]]
    descriptors = [Descriptor.from_dict(d) for d in manifest.get("layers", [])]
    if [d.annotations.get(LAYER_KEY) for d in descriptors] != list(reversed(stack)):
        raise SnapshotError(f"snapshot {tag}: manifest layers do not match its config")
    received = received_bytes = skipped = 0
    pulled: list[str] = []
    for index, descriptor in enumerate(descriptors):  # bottom first
        layer = stack[len(stack) - 1 - index]
        if layers.has(layer):
            skipped += 1
            continue
        _place(registry, layers, layer, descriptor, below=stack[len(stack) - index :])
        pulled.append(layer)
        received, received_bytes = received + 1, received_bytes + descriptor.size
    if top not in stack and not layers.has(top):  # a flattened stack: top names its merge
        staging = layers.root / f".tmp-{uuid.uuid4().hex[:20]}"
        (staging / "diff").mkdir(parents=True)
        (staging / "chain").write_text("[]")
        (staging / "flat").write_text(stack[0])
        _rename(staging, layers.root / top)
    for layer in pulled:  # owned by no snapshot of this host: live while a stack needs them
        if layer != top:
            (layers.root / layer / "deleted").touch()
    return Transfer(received, received_bytes, skipped, time.perf_counter() - started)


def _place(
    registry: Registry, layers: LayerStore, layer: str, blob: Descriptor, below: list[str]
) -> None:
    staging = layers.root / f".tmp-{uuid.uuid4().hex[:20]}"
    staging.mkdir()
    try:
        with tempfile.NamedTemporaryFile(dir=staging, suffix=".tar") as handle:
            registry.fetch_blob(blob.digest, handle)  # raises on a digest mismatch
            handle.flush()
            unpack(Path(handle.name), staging / "diff")
        (staging / "chain").write_text(json.dumps(below))
        (staging / "blob.json").write_text(json.dumps({"digest": blob.digest, "size": blob.size}))
        _rename(staging, layers.root / layer)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _rename(staging: Path, final: Path) -> None:
    """Put ``staging`` in place; another pull that got there first is as good."""
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / "diff").is_dir():
            raise
