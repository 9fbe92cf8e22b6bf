"""Checkpoint, fork, size accounting and deletion of environment state."""

from snapshots._errors import SnapshotError, TvcacheError
from snapshots._handle import SnapshotHandle

__all__ = ["SnapshotError", "SnapshotHandle", "TvcacheError"]
