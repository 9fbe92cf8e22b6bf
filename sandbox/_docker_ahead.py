"""Restores done ahead of time: ``full`` forks of hot snapshots, restored and frozen in advance.

A cold ``full`` fork waits for Docker to create a container, unpack the checkpoint and run CRIU
(hundreds of ms). Rollouts of a GRPO group fork the same snapshots again and again, so once a
snapshot has been forked ``hot_forks`` times, a background thread keeps ``per_snapshot`` forks
of it restored and paused (frozen: their processes use no CPU and change nothing). A fork then
only unpauses one. A paused fork is the restore of the same checkpoint that a cold fork would
make, proven the same way (its shell's boot id), so what a rollout sees does not change; its
processes ran for the moment between the restore and the pause, as they do in a cold fork
before its first command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from snapshots import SnapshotHandle

log = logging.getLogger("tvcache.docker.ahead")


class Frozen(Protocol):
    """What the stash needs of a restored sandbox."""

    def close(self) -> None: ...


S = TypeVar("S", bound=Frozen)


class RestoreAhead(Generic[S]):
    """Restored-and-paused forks per hot snapshot, at most ``max_total`` ready or in flight.

    ``restore`` makes a restored, paused fork of a handle (raising when it cannot); ``thaw``
    unpauses one being handed out. Thread-safe; one background thread does the restores.
    """

    def __init__(
        self,
        restore: Callable[[SnapshotHandle], S],
        thaw: Callable[[S], None],
        *,
        per_snapshot: int = 1,
        hot_forks: int = 2,
        max_total: int = 4,
    ) -> None:
        self._restore = restore
        self._thaw = thaw
        self.per_snapshot = per_snapshot
        self.hot_forks = hot_forks
        self.max_total = max_total
        self._cond = threading.Condition()
        self._ready: dict[str, deque[S]] = {}
        self._wanted: deque[SnapshotHandle] = deque()
        self._forks: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._dropped: set[str] = set()
        self._failed: set[str] = set()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.takes = 0
        self.failures = 0
        self.restore_seconds = 0.0
        """Seconds spent restoring ahead (taken or not): environment time a benchmark counts."""

    def take(self, handle: SnapshotHandle) -> S | None:
        """A ready fork of ``handle``, unpaused, or None; counts the fork and refills."""
        sid = handle.snapshot_id
        with self._cond:
            self._forks[sid] += 1
            ready = self._ready.get(sid)
            sandbox = ready.popleft() if ready else None
            self._want(handle)
        if sandbox is None:
            return None
        try:
            self._thaw(sandbox)
        except Exception as error:
            log.warning("a fork restored ahead of %s did not thaw: %s", sid, error)
            sandbox.close()
            return None
        with self._cond:
            self.takes += 1
        return sandbox

    def _count(self, sid: str) -> int:
        return len(self._ready.get(sid, ())) + self._in_flight[sid]

    def _total(self) -> int:
        return sum(len(q) for q in self._ready.values()) + sum(self._in_flight.values())

    def _want(self, handle: SnapshotHandle) -> None:
        """Ask for refills of ``handle`` when it is hot (the caller holds the lock)."""
        sid = handle.snapshot_id
        if self._closed or sid in self._dropped or sid in self._failed:
            return
        if self._forks[sid] < self.hot_forks:
            return
        queued = sum(1 for h in self._wanted if h.snapshot_id == sid)
        for _ in range(self.per_snapshot - self._count(sid) - queued):
            self._wanted.append(handle)
        if self._wanted and self._thread is None:
            self._thread = threading.Thread(target=self._fill, name="restore-ahead", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (self._wanted and self._total() < self.max_total):
                    self._cond.wait()
                if self._closed:
                    return
                handle = self._wanted.popleft()
                sid = handle.snapshot_id
                if sid in self._dropped or self._count(sid) >= self.per_snapshot:
                    continue
                self._in_flight[sid] += 1
            sandbox: S | None = None
            started = time.perf_counter()
            try:
                sandbox = self._restore(handle)
            except Exception as error:
                log.warning("restoring ahead of time from %s failed: %s", sid, error)
                with self._cond:
                    self.failures += 1
                    self._failed.add(sid)  # its forks restore cold, as before
            with self._cond:
                self.restore_seconds += time.perf_counter() - started
                keep = sandbox is not None and not self._closed and sid not in self._dropped
                if keep and sandbox is not None:
                    self._ready.setdefault(sid, deque()).append(sandbox)
            if sandbox is not None and not keep:  # still in flight: drop and close wait
                try:
                    sandbox.close()
                except Exception as error:
                    log.warning("closing a fork restored ahead of %s failed: %s", sid, error)
            with self._cond:
                self._in_flight[sid] -= 1
                self._cond.notify_all()

    def drop(self, snapshot_id: str) -> None:
        """The snapshot is being deleted: close its ready forks, restore no more of it."""
        with self._cond:
            self._dropped.add(snapshot_id)
            doomed = list(self._ready.pop(snapshot_id, ()))
            self._wanted = deque(h for h in self._wanted if h.snapshot_id != snapshot_id)
            while self._in_flight[snapshot_id]:  # its restore reads the checkpoint files
                self._cond.wait()
        for sandbox in doomed:
            sandbox.close()

    def ready(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._ready.values())

    def wait_ready(self, snapshot_id: str, timeout: float) -> bool:
        """Block until a fork of ``snapshot_id`` is ready (benchmarks, tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._ready.get(snapshot_id)), timeout)

    def close(self) -> None:
        """Stop restoring and close every ready fork (after any restore in flight)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while sum(self._in_flight.values()):
                self._cond.wait()
            doomed = [s for q in self._ready.values() for s in q]
            self._ready.clear()
            self._wanted.clear()
        for sandbox in doomed:
            sandbox.close()
