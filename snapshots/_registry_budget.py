"""The registry's own byte budget: least recently used snapshots leave it first.

The local snapshot budget is per host (the engine's); the registry is shared by every host,
so it has its own. Its bytes are the unique blobs its manifests reference (a layer shared by
many snapshots counts once). Over budget, the manifests of the least recently used snapshots
are deleted, then the blobs no remaining manifest references; the registry frees their bytes
when its garbage collection runs (:func:`garbage_collect` where the registry runs on this
host; elsewhere its operator runs ``docker-registry garbage-collect <config>``).
"""

from __future__ import annotations

import calendar
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapshots._errors import SnapshotError
from snapshots.registry import BlobMissingError, Descriptor, Registry


@dataclass(frozen=True, slots=True)
class Entry:
    """One snapshot in the registry: its manifest, the blobs it references, when pushed."""

    registry: Registry
    tag: str
    digest: str
    blobs: tuple[Descriptor, ...]
    created: float

    def links(self) -> set[tuple[str, str]]:
        """(repository, digest) of its blobs: a blob is deleted from one repository at a time."""
        return {(self.registry.repository, blob.digest) for blob in self.blobs}


@dataclass(slots=True)
class Eviction:
    """What :func:`enforce` did."""

    bytes_before: int
    bytes_after: int
    evicted: list[str] = field(default_factory=list)
    blobs_deleted: int = 0


def entries(registry: Registry) -> dict[str, Entry]:
    """Every snapshot manifest in the registry's repository, by ``repository:tag``."""
    found: dict[str, Entry] = {}
    for tag in registry.tags():
        try:
            manifest, digest = registry.get_manifest(tag)
        except BlobMissingError:  # deleted since the listing
            continue
        blobs = [Descriptor.from_dict(manifest["config"])]
        blobs += [Descriptor.from_dict(d) for d in manifest.get("layers", [])]
        created = (manifest.get("annotations") or {}).get("org.opencontainers.image.created", "")
        found[f"{registry.repository}:{tag}"] = Entry(
            registry, tag, digest, tuple(blobs), _epoch(str(created))
        )
    return found


def _epoch(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return 0.0


def used_bytes(found: Mapping[str, Entry]) -> int:
    """Bytes of the unique blobs ``found`` references."""
    unique = {blob.digest: blob.size for entry in found.values() for blob in entry.blobs}
    return sum(unique.values())


def enforce(
    registries: Sequence[Registry], budget: int, last_used: Mapping[str, float]
) -> Eviction:
    """Delete least recently used snapshots of these repositories (``last_used`` by tag, else
    when pushed) until their blobs fit ``budget`` bytes, then the blobs nothing references."""
    if budget < 0:
        raise SnapshotError(f"registry budget {budget} is negative", "use a byte count ≥ 0")
    found = {key: e for registry in registries for key, e in entries(registry).items()}
    report = Eviction(used_bytes(found), 0)
    order = sorted(found.values(), key=lambda e: (last_used.get(e.tag, e.created), e.tag))
    doomed: list[Entry] = []
    while order and used_bytes(found) > budget:
        victim = order.pop(0)
        victim.registry.delete_manifest(victim.digest)
        del found[f"{victim.registry.repository}:{victim.tag}"]
        doomed.append(victim)
        report.evicted.append(victim.tag)
    kept = {link for entry in found.values() for link in entry.links()}
    owners = {e.registry.repository: e.registry for e in doomed}
    for repository, digest in {link for e in doomed for link in e.links()} - kept:
        report.blobs_deleted += owners[repository].delete_blob(digest)
    report.bytes_after = used_bytes(found)
    return report


def garbage_collect(config: Path, binary: str = "docker-registry") -> str:
    """Run the registry's garbage collection on this host (frees deleted blobs' bytes); its
    output. Safe while no push runs: Distribution's collector does not see uploads in flight."""
    try:
        done = subprocess.run(
            [binary, "garbage-collect", "--delete-untagged", str(config)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SnapshotError(
            f"{binary} garbage-collect {config} failed: {error}",
            "run it on the registry's host (scripts/install-registry.sh installs it)",
        ) from error
    if done.returncode != 0:
        raise SnapshotError(
            f"{binary} garbage-collect {config} exited {done.returncode}: {done.stderr[-500:]}",
            "check the config path and that the storage directory is writable",
        )
    return done.stdout
