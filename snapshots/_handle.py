"""What the rest of tvcache knows of a snapshot: an opaque, serialisable handle."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SnapshotHandle:
    """A checkpoint of one environment state, owned by one backend.

    ``location`` is backend-specific (a directory, an image reference); ``meta`` holds the
    rest the backend needs to fork it (shell state, checkpoint paths). ``size_bytes`` is what
    the snapshot occupies on disk and is what the byte budget counts.
    """

    snapshot_id: str
    backend: str
    level: str
    location: str
    size_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "snapshot_id": self.snapshot_id,
                "backend": self.backend,
                "level": self.level,
                "location": self.location,
                "size_bytes": self.size_bytes,
                "meta": self.meta,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SnapshotHandle:
        data = json.loads(text)
        return cls(
            snapshot_id=data["snapshot_id"],
            backend=data["backend"],
            level=data["level"],
            location=data["location"],
            size_bytes=int(data["size_bytes"]),
            meta=dict(data.get("meta") or {}),
        )
