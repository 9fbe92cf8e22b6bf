"""Plain rows the store reads and writes. The graph builds its nodes from them."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import Observation, RootSpec, ToolCall
from snapshots import SnapshotHandle


@dataclass(frozen=True, slots=True)
class RootRecord:
    """A root: spec as the user gave it plus the backend's identity of its template."""

    root_id: str
    spec: RootSpec
    identity: str
    created: float


@dataclass(slots=True)
class NodeStats:
    """Execution statistics; written behind, so a hit never waits on disk."""

    executions: int = 0
    hits: int = 0
    exec_seconds: float = 0.0
    seconds_saved: float = 0.0
    last_use: float = 0.0


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node as stored. ``parent_id`` is None only for a root's own node."""

    node_id: str
    root_id: str
    parent_id: str | None
    depth: int
    call_key: str | None
    call: ToolCall | None
    observation: Observation | None
    nondeterministic: bool
    read_only: bool
    stats: NodeStats
    created: float
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A snapshot held at a node."""

    node_id: str
    root_id: str
    handle: SnapshotHandle
    created: float
