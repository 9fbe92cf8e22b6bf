"""Typed statistics: what an engine (``EngineStats``) and a stored root (``RootStats``) report.

Frozen dataclasses so callers read ``stats.hits`` as an int, not ``int(stats["hits"])`` cast
back from a dict of objects; ``to_dict()`` is the JSON the service and the CLI print (its keys
and values are the wire format, unchanged). ``stats["hits"]`` still reads a field, for callers
written against the dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class _Fields:
    """``to_dict()`` and read-only ``[]`` access by field name, for frozen dataclasses."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EngineStats(_Fields):
    """Engine-wide counters since the engine started, and the graph's current size."""

    calls: int = 0
    hits: int = 0
    shared_hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    executed_seconds: float = 0.0
    replayed_calls: int = 0
    replayed_seconds: float = 0.0
    seconds_saved: float = 0.0
    starts: int = 0
    forks: int = 0
    catch_ups: int = 0
    pool_takes: int = 0
    read_only_nodes: int = 0
    merged_nodes: int = 0
    misdeclared_pure: int = 0
    snapshots_refused: int = 0
    fork_failures: int = 0
    fingerprints: int = 0
    fingerprint_seconds: float = 0.0
    shadow_runs: int = 0
    shadow_mismatches: int = 0
    shadow_errors: int = 0
    snapshots: int = 0
    snapshot_reasons: dict[str, int] = field(default_factory=dict)
    evictions: int = 0
    divergences: int = 0
    over_budget: int = 0
    nodes: int = 0
    snapshot_bytes: int = 0
    fork_seconds_estimate: float = 0.0
    snapshot_seconds_estimate: float = 0.0

    @property
    def tool_seconds(self) -> float:
        """Seconds sandboxes spent executing calls: misses plus replays."""
        return self.executed_seconds + self.replayed_seconds

    @property
    def executed_calls(self) -> int:
        """Calls a sandbox ran: misses plus replays."""
        return self.misses + self.replayed_calls


@dataclass(frozen=True, slots=True)
class RootStats(_Fields):
    """One stored root's totals, as ``tvcache stats`` prints them."""

    root_id: str
    task_id: str
    backend: str
    nodes: int
    calls: int
    hits: int
    hit_rate: float
    exec_seconds: float
    seconds_saved: float
    nondeterministic: int
    read_only: int
    fingerprinted: int
    withdrawn: int
    snapshots: int
    snapshot_bytes: int
