"""Snapshot and eviction policies: small replaceable objects that decide from measured costs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from tvcache._graph import Node, replay_seconds

Moment = Literal["branch", "after_call"]


@dataclass(frozen=True, slots=True)
class SnapshotContext:
    """What the engine measured when it asks whether to checkpoint ``node``.

    ``moment`` is ``"branch"`` when a miss is about to add a second child to ``node`` (the
    sandbox is at ``node`` right now) and ``"after_call"`` when ``node`` was just executed.
    ``replay_seconds`` is the cost of reaching ``node`` from its deepest snapshotted
    ancestor by replay; ``fork_seconds`` the engine's running estimate of a fork.
    """

    node: Node
    moment: Moment
    replay_seconds: float
    fork_seconds: float
    snapshot_seconds: float


class SnapshotPolicy(Protocol):
    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        """The reason to snapshot now (recorded in stats), or None."""
        ...


@dataclass(frozen=True, slots=True)
class CostAwarePolicy:
    """The default: checkpoint where replay would cost more than a fork.

    Nondeterministic nodes are always checkpointed, so that no fork replays through them.
    At a branch point the bar is lower (``branch_factor``), since at least two futures will
    start from there. A checkpoint must also pay for itself: ``snapshot_seconds`` is added
    to the fork cost it has to beat.
    """

    replay_factor: float = 1.0
    branch_factor: float = 0.5

    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        if ctx.node.nondeterministic:
            return "nondeterministic"
        cost = ctx.fork_seconds + ctx.snapshot_seconds
        if ctx.moment == "branch" and ctx.replay_seconds > self.branch_factor * cost:
            return "branch"
        if ctx.replay_seconds > self.replay_factor * cost:
            return "replay_cost"
        return None


@dataclass(frozen=True, slots=True)
class NeverSnapshot:
    """Strict prefix cache without checkpoints: every miss replays from the root."""

    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class AlwaysSnapshot:
    """Checkpoint every executed node (for tests and as a benchmark bound)."""

    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        return "always" if ctx.moment == "after_call" else None


class EvictionStrategy(Protocol):
    def priority(self, node: Node, now: float) -> float:
        """Lower is evicted first. Only unlocked snapshotted nodes are asked."""
        ...


@dataclass(frozen=True, slots=True)
class SecondsSavedPerByte:
    """The default: keep what saves the most replay seconds per byte of disk.

    A snapshot saves the replay from its nearest snapshotted ancestor every time a fork
    starts from it; nondeterministic nodes rank last, since losing them forces replays
    through a call that cannot be replayed faithfully.
    """

    def priority(self, node: Node, now: float) -> float:
        if node.snapshot is None:
            return -math.inf
        if node.nondeterministic:
            return math.inf
        parent = node.parent
        base = parent.deepest_snapshot() if parent is not None else node
        avoided = replay_seconds(base, node) if parent is not None else 0.0
        uses = 1 + node.stats.hits + len(node.children)
        return avoided * uses / max(node.snapshot.size_bytes, 1)


@dataclass(frozen=True, slots=True)
class LeastRecentlyUsed:
    """Evict the snapshot whose node was used longest ago."""

    def priority(self, node: Node, now: float) -> float:
        return node.stats.last_use
