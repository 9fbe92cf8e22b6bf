"""The two interfaces a backend implements. The engine holds policy; a backend only does I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sandbox._types import Observation, RootSpec, ToolCall, ToolSpec
from snapshots import SnapshotHandle


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One line of ``tvcache doctor``: does ``name`` work here, and if not, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(slots=True)
class ReconcileReport:
    """What a backend found when comparing its storage with the store's snapshot records."""

    orphans_removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@runtime_checkable
class Sandbox(Protocol):
    """One live environment. Not thread-safe: one session drives it at a time."""

    @property
    def sandbox_id(self) -> str: ...

    def run(self, call: ToolCall, timeout: float | None = None) -> Observation:
        """Execute ``call``; a timeout ends the command (the observation says so).

        The sandbox stays usable after a timeout.
        """
        ...

    def fingerprint(self) -> str | None:
        """A digest of everything that can change a later observation, or None when the
        state cannot be captured faithfully (say, a background process is running).

        Equal fingerprints must mean equal futures: tvcache merges states by it.
        """
        ...

    def snapshot(self, snapshot_id: str) -> SnapshotHandle:
        """Checkpoint the current state consistently; the sandbox keeps running unchanged."""
        ...

    def close(self) -> None:
        """Destroy the sandbox and everything it holds. Idempotent."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Creates sandboxes from roots and snapshots, and owns snapshot storage."""

    @property
    def name(self) -> str: ...

    def tool_specs(self) -> Mapping[str, ToolSpec]:
        """The tools a sandbox of this backend runs, by name."""
        ...

    def root_identity(self, spec: RootSpec) -> str:
        """A digest of what the root starts from (template content, image digest)."""
        ...

    def start(self, spec: RootSpec) -> Sandbox:
        """A fresh sandbox in the root's starting state."""
        ...

    def fork(self, handle: SnapshotHandle) -> Sandbox:
        """A new, independent sandbox in the state of ``handle``."""
        ...

    def delete_snapshot(self, handle: SnapshotHandle) -> None:
        """Free the snapshot's storage. Idempotent."""
        ...

    def reconcile(self, known: Mapping[str, SnapshotHandle]) -> ReconcileReport:
        """Remove storage no record knows (orphans); report records whose storage is gone."""
        ...

    def doctor(self) -> list[DoctorCheck]:
        """What works on this machine for this backend."""
        ...
