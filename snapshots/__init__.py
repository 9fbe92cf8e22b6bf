"""Checkpoint, fork, size accounting and deletion of environment state."""

from snapshots._errors import SnapshotError, SnapshotRefusedError, TvcacheError
from snapshots._handle import SnapshotHandle

__all__ = ["SnapshotError", "SnapshotHandle", "SnapshotRefusedError", "TvcacheError"]
