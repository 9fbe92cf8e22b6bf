"""``fs`` snapshots of Docker containers: ``docker commit`` into a labelled image, flattened before
the layer depth reaches Docker's limit, with its size on disk.

Depth grows along chains of forks (a fork's commit stacks one layer on its source's image), never
by committing one container repeatedly. overlay2 refuses images of more than 125 layers, so a
commit deeper than ``flatten_depth`` is rewritten as one layer (``export | import``, 2-3 s; the
config is passed back with ``changes`` since import drops it). A container keeps the image it
was created from, so each commit of a container forked from a snapshot at the threshold is
flattened: one container in ``flatten_depth`` fork generations. Every object carries the
``tvcache.*`` labels so that reconcile can tell what tvcache left behind, and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from snapshots._errors import SnapshotError
from snapshots._handle import SnapshotHandle

BACKEND = "docker"
REPOSITORY = "tvcache/snapshot"
FLATTEN_DEPTH = 90
"""Flatten images deeper than this; Docker fails at 125 layers (commit number ~124)."""

LABEL_MANAGED = "tvcache.managed"
LABEL_OWNER = "tvcache.owner"
LABEL_PID = "tvcache.pid"
LABEL_PID_START = "tvcache.pid_start"
LABEL_STORE = "tvcache.store"
LABEL_KIND = "tvcache.kind"
LABEL_SNAPSHOT = "tvcache.snapshot"

MIN_LAYER_BYTES = 4096
"""Docker counts file bytes only; a layer of directories still costs a block and metadata."""

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

DockerAPI = Any
"""A ``docker.APIClient``; the SDK has no type hints."""


def connect(timeout: float = 300.0) -> DockerAPI:
    """A low-level client for the local daemon (``DOCKER_HOST`` etc. are honoured).

    The SDK is imported by name: for mypy, the repo's ``docker/`` folder would shadow it.
    """
    try:
        return importlib.import_module("docker").from_env(timeout=int(timeout)).api
    except Exception as error:  # the SDK raises DockerException, requests errors, OSError
        raise SnapshotError(
            f"no Docker daemon answers: {error}",
            "run scripts/setup-docker.sh (starts dockerd with experimental features)",
        ) from error


def api_error(error: Exception) -> str:
    """The daemon's own message of an SDK exception."""
    explanation = getattr(error, "explanation", None)
    return str(explanation or error)


def is_not_found(error: Exception) -> bool:
    return type(error).__name__ in ("NotFound", "ImageNotFound")


PAUSE_ATTEMPTS = 6


def pause(api: DockerAPI, container: str, attempts: int = PAUSE_ATTEMPTS) -> None:
    """Freeze ``container``; retry what the cgroup v1 freezer gives up on under load.

    runc fails with "unable to freeze" when a task does not reach the refrigerator within its
    budget (a busy process on a loaded host): the container is left running, so trying again
    a little later is safe. Other errors (the container is gone) raise at once.
    """
    for attempt in range(attempts):
        try:
            api.pause(container)
            return
        except Exception as error:
            if "unable to freeze" not in api_error(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)


def image_tag(snapshot_id: str) -> str:
    """A valid Docker tag for ``snapshot_id`` (itself when it is one, else a digest of it)."""
    if _TAG.fullmatch(snapshot_id):
        return snapshot_id
    return "h-" + hashlib.sha256(snapshot_id.encode()).hexdigest()[:40]


def image_ref(snapshot_id: str) -> str:
    return f"{REPOSITORY}:{image_tag(snapshot_id)}"


def inspect_image(api: DockerAPI, image: str) -> dict[str, Any]:
    result: dict[str, Any] = api.inspect_image(image)
    return result


def depth(info: Mapping[str, Any]) -> int:
    """Number of layers of an inspected image."""
    return len((info.get("RootFS") or {}).get("Layers") or [])


def commit(
    api: DockerAPI, container: str, ref: str, labels: Mapping[str, str], *, pause: bool
) -> str:
    """``docker commit`` with ``labels`` merged into the container's config; the image id."""
    repository, tag = ref.rsplit(":", 1)
    try:
        result = api.commit(
            container, repository=repository, tag=tag, pause=pause, conf={"Labels": dict(labels)}
        )
    except Exception as error:
        raise SnapshotError(
            f"docker commit of {container[:12]} failed: {api_error(error)}",
            "check free disk space and that the container still runs",
        ) from error
    return str(result["Id"])


def _changes(config: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """Dockerfile instructions that give an imported image ``config`` back (JSON forms)."""
    changes = []
    for key, instruction in (("Cmd", "CMD"), ("Entrypoint", "ENTRYPOINT")):
        if config.get(key):
            changes.append(f"{instruction} {json.dumps(config[key])}")
    for entry in config.get("Env") or []:
        name, _, value = entry.partition("=")
        if "\n" not in value:  # a Dockerfile word cannot hold one; the shell's env file does
            changes.append(f"ENV {name}={_quote(value)}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    merged = {**(config.get("Labels") or {}), **labels}
    changes.extend(f"LABEL {_quote(k)}={_quote(v)}" for k, v in sorted(merged.items()))
    return changes


def _quote(value: str) -> str:
    """A Dockerfile word: double quotes, with the builder's escapes and no ``$`` expansion."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def flatten(api: DockerAPI, image: str, ref: str, labels: Mapping[str, str]) -> str:
    """Rewrite ``image`` as a one-layer image tagged ``ref`` (config kept); its id."""
    config = inspect_image(api, image).get("Config") or {}
    temp = api.create_container(
        image, command=["true"], entrypoint=[""], labels={**labels, LABEL_KIND: "flatten"}
    )["Id"]
    try:
        repository, tag = ref.rsplit(":", 1)
        reply = api.import_image_from_data(
            api.export(temp), repository=repository, tag=tag, changes=_changes(config, labels)
        )
    except Exception as error:
        raise SnapshotError(
            f"flattening {image[:19]} failed: {api_error(error)}", "check free disk space"
        ) from error
    finally:
        api.remove_container(temp, force=True)
    match = re.search(r"sha256:[0-9a-f]{64}", str(reply))
    if match is None:
        raise SnapshotError(f"docker import gave no image id: {str(reply)[:200]}")
    return match.group(0)


def remove_image(api: DockerAPI, image: str) -> bool:
    """Remove an image (a tag only untags it while children or containers use it).

    Idempotent. Returns False when the image data stays because something still uses it:
    Docker prunes it with its last user, or reconcile does later.
    """
    try:
        api.remove_image(image, force=False, noprune=False)
    except Exception as error:
        if is_not_found(error):
            return True
        if "conflict" in api_error(error).lower() or getattr(error, "status_code", 0) == 409:
            return False
        raise SnapshotError(f"removing image {image} failed: {api_error(error)}") from error
    return True


@dataclass(frozen=True, slots=True)
class Layer:
    """A committed snapshot image: its id, depth, and the bytes it adds to its parent."""

    image: str
    depth: int
    size_bytes: int
    flattened: bool


def finish(
    api: DockerAPI,
    image: str,
    parent: str,
    ref: str,
    labels: Mapping[str, str],
    flatten_depth: int = FLATTEN_DEPTH,
) -> Layer:
    """Flatten a fresh commit when it is too deep, and measure what it adds on disk."""
    info = inspect_image(api, image)
    layers, flattened = depth(info), False
    if layers > flatten_depth:
        old = image
        image = flatten(api, image, ref, labels)
        remove_image(api, old)
        info = inspect_image(api, image)
        layers, flattened = depth(info), True
    size = int(info.get("Size") or 0)
    if not flattened:
        try:
            size -= int(inspect_image(api, parent).get("Size") or 0)
        except Exception as error:
            if not is_not_found(error):
                raise
    return Layer(image, layers, max(size, MIN_LAYER_BYTES), flattened)


def take(
    api: DockerAPI,
    container: str,
    snapshot_id: str,
    *,
    labels: Mapping[str, str],
    meta: Mapping[str, Any],
    flatten_depth: int = FLATTEN_DEPTH,
) -> SnapshotHandle:
    """An ``fs`` snapshot: commit (paused, so the file system is consistent) and finish."""
    ref = image_ref(snapshot_id)
    parent = str(api.inspect_container(container)["Image"])
    image = commit(api, container, ref, labels, pause=True)
    layer = finish(api, image, parent, ref, labels, flatten_depth)
    return handle(snapshot_id, "fs", ref, layer, meta)


def handle(
    snapshot_id: str, level: str, ref: str, layer: Layer, meta: Mapping[str, Any], extra: int = 0
) -> SnapshotHandle:
    return SnapshotHandle(
        snapshot_id=snapshot_id,
        backend=BACKEND,
        level=level,
        location=ref,
        size_bytes=layer.size_bytes + extra,
        meta={
            **meta,
            "image": layer.image,
            "depth": layer.depth,
            "flattened": layer.flattened,
            "layer_bytes": layer.size_bytes,
        },
    )


def process_labels() -> dict[str, str]:
    """Labels naming this process in a pid-reuse-proof way (pid and start time)."""
    me = psutil.Process()
    return {LABEL_PID: str(me.pid), LABEL_PID_START: f"{me.create_time():.3f}"}


def creator_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process named by :func:`process_labels` still runs."""
    pid, start = labels.get(LABEL_PID, ""), labels.get(LABEL_PID_START, "")
    try:
        return pid.isdigit() and f"{psutil.Process(int(pid)).create_time():.3f}" == start
    except psutil.Error:
        return False


def sweep_images(
    api: DockerAPI,
    store: str,
    known: Collection[str],
    orphaned: Callable[[Mapping[str, str]], bool],
) -> tuple[list[str], set[str]]:
    """Remove this store's snapshot images that no id in ``known`` names and ``orphaned``
    accepts (images still in use stay). Returns the removed snapshot ids, and the ids and tags
    of the images of ``known`` snapshots that exist.
    """
    removed: list[str] = []
    present: set[str] = set()
    filters = {"label": [f"{LABEL_STORE}={store}", f"{LABEL_KIND}=snapshot"]}
    for image in api.images(all=True, filters=filters):
        labels = image.get("Labels") or {}
        snapshot_id = labels.get(LABEL_SNAPSHOT, "")
        if snapshot_id in known:
            present.update([image["Id"], *(image.get("RepoTags") or [])])
        elif orphaned(labels) and remove_image(api, image["Id"]):
            removed.append(snapshot_id)
    return removed, present
