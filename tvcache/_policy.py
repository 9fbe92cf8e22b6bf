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
    ``snapshots_taken`` and ``snapshot_forks`` are this engine's record for the same moment:
    how many snapshots it took there and how many forks those served, so that a policy can
    judge how often a snapshot will be used (most are never forked from).
    """

    node: Node
    moment: Moment
    replay_seconds: float
    fork_seconds: float
    snapshot_seconds: float
    snapshots_taken: int = 0
    snapshot_forks: int = 0


class SnapshotPolicy(Protocol):
    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        """The reason to snapshot now (recorded in stats), or None."""
        ...


@dataclass(frozen=True, slots=True)
class CostAwarePolicy:
    """The default: checkpoint where the replays it is expected to save beat its cost.

    A snapshot costs ``snapshot_seconds`` once and a fork each time it is used; each use
    saves the replay from the nearest snapshotted ancestor. So the bar is
    ``uses × replay > snapshot + uses × fork``, with ``uses`` the forks a snapshot taken at
    this moment is expected to serve: the engine's running rate (forks served / snapshots
    taken) with a prior worth ``prior_weight`` snapshots. Unused snapshots lower the rate and
    raise the bar, so cheap measured forks and snapshots no longer checkpoint every node
    (a cascade). The prior is ``1 / replay_factor`` uses after a call and
    ``1 / branch_factor`` at a branch point (at least two futures start there).
    Nondeterministic nodes are always checkpointed, so that no fork replays through them.
    """

    replay_factor: float = 1.0
    branch_factor: float = 0.5
    prior_weight: float = 1.0

    def expected_uses(self, ctx: SnapshotContext) -> float:
        """Forks a snapshot taken now is expected to serve (``inf`` for a factor of 0)."""
        factor = self.branch_factor if ctx.moment == "branch" else self.replay_factor
        if factor <= 0:
            return math.inf
        prior = self.prior_weight / factor
        return (ctx.snapshot_forks + prior) / (ctx.snapshots_taken + self.prior_weight)

    def should_snapshot(self, ctx: SnapshotContext) -> str | None:
        if ctx.node.nondeterministic:
            return "nondeterministic"
        uses = self.expected_uses(ctx)
        if uses <= 0:
            return None
        if ctx.replay_seconds > ctx.fork_seconds + ctx.snapshot_seconds / uses:
            return "branch" if ctx.moment == "branch" else "replay_cost"
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
