"""A pool of pre-forked sandboxes at hot nodes, filled in the background.

A miss normally waits for a fork (and the replay below the forked snapshot). The pool moves
that wait off the request path: where misses keep happening (a node where a GRPO group's
rollouts diverge) and at the root of a newly opened session, it prepares sandboxes ahead of
time in one background thread, so the next miss there starts at once. Where the backend can
start containers of a snapshot ahead of time (the Docker backend's runc path, ``prefork``:
the shell started in the snapshot's state and idle, no call run) and the node holds that
snapshot, it does that instead: the engine's next fork of it is then a hand-over of a handle,
counted against ``max_size`` like the pool's own sandboxes (``stats()`` says their memory). It
implements :class:`tvcache._pool.SandboxPool`; attach it with ``engine.pool = PreforkPool(engine)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from sandbox import Sandbox
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._graph import Clock, Node, faithful_replay_seconds

log = logging.getLogger("tvcache.pool")


@dataclass(slots=True)
class _Entry:
    """A ready sandbox at ``node``, made by forking ``base`` and replaying down to ``node``."""

    sandbox: Sandbox
    node: Node
    base: Node
    ready_at: float


class PreforkPool:
    """Pre-forked sandboxes, at most ``max_size`` (ready plus being made), ``per_node`` per node.

    A node is hot once ``hot_misses`` misses needed a sandbox there; each later miss there
    asks for a replacement. A sandbox unused for ``idle_seconds`` is destroyed. Thread-safe.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_size: int = 8,
        per_node: int = 2,
        hot_misses: int = 2,
        idle_seconds: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_size = max_size
        self.per_node = per_node
        self.hot_misses = hot_misses
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: list[_Entry] = []
        self._wanted: deque[Node] = deque()
        self._making: Counter[str] = Counter()
        self._misses: Counter[str] = Counter()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tvcache-pool", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ SandboxPool
    def take(self, target: Node, *, max_replay_seconds: float) -> tuple[Sandbox, Node] | None:
        """The ready sandbox closest above ``target`` whose faithful replay fits the bound."""
        with self._cond:
            best: tuple[float, _Entry] | None = None
            for entry in self._ready:
                if not entry.node.is_ancestor_of(target):
                    continue
                # from the fork's base: a node that diverged since then disqualifies the sandbox
                if faithful_replay_seconds(entry.base, target) is None:
                    continue
                cost = faithful_replay_seconds(entry.node, target)
                if (
                    cost is not None
                    and cost <= max_replay_seconds
                    and (best is None or cost < best[0])
                ):
                    best = (cost, entry)
            if best is None:
                return None
            self._ready.remove(best[1])
            return best[1].sandbox, best[1].node

    def note_miss(self, node: Node) -> None:
        with self._cond:
            self._misses[node.node_id] += 1
            if self._misses[node.node_id] >= self.hot_misses:
                self._want(node)

    def note_session(self, root: Node) -> None:
        with self._cond:
            self._want(root)

    def close(self) -> None:
        """Stop the filler (a fork in flight is destroyed when it ends) and every sandbox."""
        with self._cond:
            self._closed = True
            self._wanted.clear()
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            entries, self._ready = self._ready, []
        for entry in entries:
            entry.sandbox.close()
        drop = getattr(self.engine.backend, "drop_preforked", None)
        if callable(drop):  # containers created ahead of time for the engine's forks
            drop()

    # ---------------------------------------------------------------- filling
    def _want(self, node: Node) -> None:
        """Queue one more sandbox at ``node`` if the per-node and total limits allow it."""
        at_node = sum(e.node is node for e in self._ready) + self._making[node.node_id]
        at_node += sum(n is node for n in self._wanted)
        total = len(self._ready) + sum(self._making.values()) + len(self._wanted)
        if self._closed or at_node >= self.per_node or total >= self.max_size:
            return
        self._wanted.append(node)
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wanted and not self._closed:
                    self._cond.wait(timeout=max(self.idle_seconds / 4, 0.05))
                if self._closed:
                    return
                node = self._wanted.popleft() if self._wanted else None
                if node is not None:
                    self._making[node.node_id] += 1
            if node is None:
                self.shrink()
                continue
            try:
                entry = self._make(node)
            except (TvcacheError, OSError) as error:  # evicted snapshot, full disk: skip it
                log.warning("pool: could not prepare a sandbox at %s: %s", node.node_id, error)
                entry = None
            with self._cond:
                self._making[node.node_id] -= 1
                if entry is not None and not self._closed:
                    self._ready.append(entry)
                    entry = None
                self._cond.notify_all()
            if entry is not None:
                entry.sandbox.close()

    def _make(self, node: Node) -> _Entry | None:
        base = node.deepest_snapshot()
        if faithful_replay_seconds(base, node) is None:
            return None
        with self._cond:  # this node's own slot (in _making) is not another's
            others = len(self._ready) + sum(self._making.values()) - 1 + len(self._wanted)
        room = self.max_size - others - self._preforked()["count"]
        if room <= 0:  # the backend's started forks fill the pool (a miss may take one soon)
            return None
        prefork = getattr(self.engine.backend, "prefork", None)
        # forks started ahead of time (runc path): the engine's next fork of this snapshot
        # takes one over, and nothing runs in it until it is handed out
        handle = base.snapshot if base is node else None
        if handle is not None and prefork is not None:
            have = prefork(handle, 0)
            if prefork(handle, min(self.per_node, have + room)):
                return None
        sandbox, base = self.engine.fork_nearest(node)
        try:
            self.engine.replay(sandbox, base, node)
        except BaseException:
            sandbox.close()
            raise
        if faithful_replay_seconds(base, node) is None:  # the replay diverged
            sandbox.close()
            return None
        return _Entry(sandbox, node, base, self._clock())

    def _preforked(self) -> dict[str, int]:
        """The backend's containers started ahead of time (count, resident bytes)."""
        preforked = getattr(self.engine.backend, "preforked", None)
        return preforked() if callable(preforked) else {"count": 0, "bytes": 0}

    # -------------------------------------------------------------- shrinking
    def shrink(self) -> int:
        """Destroy sandboxes unused for ``idle_seconds``; return how many."""
        with self._cond:
            now = self._clock()
            stale = [e for e in self._ready if now - e.ready_at >= self.idle_seconds]
            self._ready = [e for e in self._ready if now - e.ready_at < self.idle_seconds]
        for entry in stale:
            entry.sandbox.close()
        shrink = getattr(self.engine.backend, "shrink_preforked", None)
        dropped = shrink(self.idle_seconds) if callable(shrink) else 0
        return len(stale) + dropped

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is queued or being made; False on timeout (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._wanted or any(self._making.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=left)
            return True

    def stats(self) -> dict[str, int]:
        """Sandboxes ready, being made, queued; hot nodes; the backend's containers started
        ahead of time and their resident bytes."""
        preforked = self._preforked()
        with self._cond:
            return {
                "preforked": preforked["count"],
                "preforked_bytes": preforked["bytes"],
                "ready": len(self._ready),
                "making": sum(self._making.values()),
                "queued": len(self._wanted),
                "hot_nodes": sum(1 for c in self._misses.values() if c >= self.hot_misses),
            }
