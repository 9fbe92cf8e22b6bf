"""The engine's snapshots: when to take one, forking the nearest, and the one way one leaves.

The policy decides, the backend does the I/O, the store records; the graph, the lock and the
counters are the engine's. A snapshot leaves service only through :meth:`Snapshots.drop`,
whether its fork failed or the byte budget evicted it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox import Backend, RootSpec, Sandbox
from snapshots import SnapshotError, SnapshotHandle, SnapshotRefusedError
from tvcache._graph import Clock, Graph, Node, replay_seconds_to
from tvcache._policy import EvictionStrategy, Moment, SnapshotContext, SnapshotPolicy
from tvcache._records import SnapshotRecord
from tvcache._settings import Settings

if TYPE_CHECKING:
    from tvcache._store import Store

log = logging.getLogger("tvcache")


@dataclass(slots=True)
class Estimate:
    """An exponential moving average of a measured duration, with a prior until measured."""

    value: float
    alpha: float
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def add(self, seconds: float) -> None:
        self.value = (
            seconds if not self.samples else (1 - self.alpha) * self.value + self.alpha * seconds
        )
        self.samples.append(seconds)


@dataclass(slots=True)
class Counters:
    """Engine-wide counters for ``stats()`` and ``/metrics``."""

    calls: int = 0
    hits: int = 0
    shared_hits: int = 0
    misses: int = 0
    executed_seconds: float = 0.0
    replayed_calls: int = 0
    replayed_seconds: float = 0.0
    seconds_saved: float = 0.0
    starts: int = 0
    forks: int = 0
    catch_ups: int = 0
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
    pool_takes: int = 0
    snapshots: int = 0
    snapshot_reasons: dict[str, int] = field(default_factory=dict)
    evictions: int = 0
    divergences: int = 0
    over_budget: int = 0


@dataclass(slots=True)
class Uses:
    """Snapshots the policy took at one moment, and the forks they served since."""

    taken: int = 0
    forks: int = 0


class Snapshots:
    """Takes, forks and drops the snapshots of one engine's graph. Thread-safe."""

    def __init__(
        self,
        *,
        backend: Backend,
        store: Store | None,
        graph: Graph,
        settings: Settings,
        policy: SnapshotPolicy,
        eviction: EvictionStrategy,
        counters: Counters,
        lock: threading.Lock,
        clock: Clock,
        root_spec: Callable[[str], RootSpec],
    ) -> None:
        self.backend = backend
        self.store = store
        self.graph = graph
        self.settings = settings
        self.policy = policy
        self.eviction = eviction
        self.counters = counters
        self._lock = lock
        self._clock = clock
        self._root_spec = root_spec
        alpha = settings.ema_alpha
        self.fork_estimate = Estimate(0.05, alpha)
        self.start_estimate = Estimate(0.05, alpha)
        self.snapshot_estimate = Estimate(0.05, alpha)
        self._taking: set[str] = set()
        # the policy's evidence of use, by the moment a deterministic node was checkpointed
        self.uses: dict[Moment, Uses] = {"branch": Uses(), "after_call": Uses()}
        self._moment_of: dict[str, Moment] = {}

    # ------------------------------------------------------------------ taking
    def maybe_take(self, sandbox: Sandbox, node: Node, moment: Moment) -> None:
        """Ask the policy; checkpoint ``node`` from ``sandbox`` (which is at ``node``) if so."""
        if node.snapshot is not None or node.node_id in self._taking or node.is_root:
            return
        uses = self.uses[moment]
        ctx = SnapshotContext(
            node=node,
            moment=moment,
            replay_seconds=replay_seconds_to(node),
            fork_seconds=self.fork_estimate.value,
            snapshot_seconds=self.snapshot_estimate.value,
            snapshots_taken=uses.taken,
            snapshot_forks=uses.forks,
        )
        reason = self.policy.should_snapshot(ctx)
        if reason is not None:
            self.take(sandbox, node, reason, moment=moment)

    def take(
        self, sandbox: Sandbox, node: Node, reason: str, *, moment: Moment | None = None
    ) -> SnapshotHandle | None:
        """Checkpoint ``node``; None when the backend refuses (it would lose processes).

        With a ``moment``, the snapshot and the forks it serves count in that moment's
        :class:`Uses` (not for a nondeterministic node: it is checkpointed whatever it costs).
        """
        with self._lock:
            if node.snapshot is not None or node.node_id in self._taking:
                return node.snapshot
            self._taking.add(node.node_id)
        try:
            started = time.perf_counter()
            try:
                handle = sandbox.snapshot(f"{node.node_id}-{uuid.uuid4().hex[:8]}")
            except SnapshotRefusedError as refused:
                log.info("no snapshot of node %s: %s", node.node_id, refused)
                with self._lock:
                    self.counters.snapshots_refused += 1
                return None
            elapsed = time.perf_counter() - started
            if self.store is not None:
                self.store.put_snapshot(
                    SnapshotRecord(node.node_id, node.root_id, handle, self._clock())
                )
            with self._lock:
                node.snapshot = handle
                self.snapshot_estimate.add(elapsed)
                self.counters.snapshots += 1
                reasons = self.counters.snapshot_reasons
                reasons[reason] = reasons.get(reason, 0) + 1
                if moment is not None and not node.nondeterministic:
                    self.uses[moment].taken += 1
                    self._moment_of[node.node_id] = moment
        finally:
            with self._lock:
                self._taking.discard(node.node_id)
        self.enforce_budget()
        return handle

    # ----------------------------------------------------------------- forking
    def fork_cost(self, base: Node) -> float:
        """Expected seconds to get a sandbox at ``base`` (a fork, or a start at the root)."""
        return (self.start_estimate if base.snapshot is None else self.fork_estimate).value

    def fork_nearest(self, target: Node) -> tuple[Sandbox, Node]:
        """A sandbox forked from the deepest snapshot on ``target``'s path that forks.

        A snapshot whose fork fails (its image is gone, a restore that cannot prove itself
        and cannot fall back faithfully) is dropped, and the next one up is tried.
        """
        while True:
            base = target.deepest_snapshot()
            try:
                return self.fork(base), base
            except SnapshotError as error:
                if base.snapshot is None:
                    raise
                log.warning(
                    "fork of node %s failed, dropping its snapshot: %s", base.node_id, error
                )
                with self._lock:
                    self.counters.fork_failures += 1
                self.drop(base, if_unlocked=False)

    def fork(self, base: Node) -> Sandbox:
        """A new sandbox at ``base``: a fork of its snapshot, or a fresh start at the root."""
        started = time.perf_counter()
        handle = base.snapshot
        if handle is None:
            sandbox = self.backend.start(self._root_spec(base.root_id))
            with self._lock:
                self.start_estimate.add(time.perf_counter() - started)
                self.counters.starts += 1
            return sandbox
        with self._locked(base):
            sandbox = self.backend.fork(handle)
        with self._lock:
            self.fork_estimate.add(time.perf_counter() - started)
            self.counters.forks += 1
            moment = self._moment_of.get(base.node_id)
            if moment is not None:
                self.uses[moment].forks += 1
        return sandbox

    @contextmanager
    def _locked(self, node: Node) -> Iterator[None]:
        """Pin the snapshot in memory and, for other processes sharing the store, on disk."""
        owner = f"fork-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.graph.lock(node)
        if self.store is not None:
            self.store.lock_snapshot(node.node_id, owner)
        try:
            yield
        finally:
            if self.store is not None:
                self.store.unlock_snapshot(node.node_id, owner)
            with self._lock:
                self.graph.unlock(node)

    # ---------------------------------------------------------------- dropping
    def drop(self, node: Node, *, if_unlocked: bool) -> bool:
        """Take ``node``'s snapshot out of service: graph, store, then the backend's storage.

        ``if_unlocked``: leave it if a fork of it is running, here or in another process
        sharing the store (False is returned and nothing changes).
        """
        with self._lock:
            if if_unlocked and node.lock_count:
                return False
            handle, node.snapshot = node.snapshot, None
            moment = self._moment_of.pop(node.node_id, None)
        if handle is None:
            return True
        if self.store is not None and not self.store.delete_snapshot(
            node.node_id, if_unlocked=if_unlocked
        ):
            with self._lock:
                node.snapshot = handle
                if moment is not None:
                    self._moment_of[node.node_id] = moment
            return False
        self.backend.delete_snapshot(handle)
        return True

    def enforce_budget(self) -> None:
        """Evict snapshots (never nodes) until the byte budget holds or only locked ones remain.

        A snapshot another process is forking (locked in the store) is skipped, not deleted.
        """
        skipped: set[str] = set()
        while True:
            with self._lock:
                if self.graph.snapshot_bytes() <= self.settings.snapshot_budget_bytes:
                    return
                now = self._clock()
                candidates = [
                    n
                    for n in self.graph.snapshotted()
                    if n.lock_count == 0 and n.node_id not in skipped
                ]
                if not candidates:
                    self.counters.over_budget += 1
                    return
                victim = min(candidates, key=lambda n: self.eviction.priority(n, now))
            if not self.drop(victim, if_unlocked=True):
                skipped.add(victim.node_id)
                continue
            with self._lock:
                self.counters.evictions += 1
