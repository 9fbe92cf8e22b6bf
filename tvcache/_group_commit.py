"""Group commit: rows that concurrent callers write together share one transaction.

A caller's row is committed before :meth:`GroupCommit.write` returns (the durability the
engine needs before it serves an observation), but while one transaction commits, the rows
of the callers who arrive meanwhile queue up, and the next of them to get the lock commits
all of them at once. No thread of its own: a lone caller pays one transaction, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

Row = Any  # what write_batch takes: the store's node records


class _Entry:
    __slots__ = ("done", "error", "row")

    def __init__(self, row: Row) -> None:
        self.row = row
        self.done = False
        self.error: BaseException | None = None


class GroupCommit:
    """Commits queued rows with ``write_batch`` (one transaction per call, all or none)."""

    def __init__(self, write_batch: Callable[[Sequence[Row]], None]) -> None:
        self._write_batch = write_batch
        self._queue: list[_Entry] = []
        self._queue_lock = threading.Lock()  # guards _queue only; never held while writing
        self._leader = threading.Lock()  # held by the caller that commits a batch

    def write(self, row: Row) -> None:
        """Commit ``row`` (with whatever else is queued); raises what its own write raised."""
        entry = _Entry(row)
        with self._queue_lock:
            self._queue.append(entry)
        with self._leader:
            if not entry.done:  # no leader took it while we waited: lead
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if entry.error is not None:
            raise entry.error

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            self._write_batch([e.row for e in batch])
        except BaseException as error:
            if len(batch) == 1:
                batch[0].error = error
            else:  # one bad row must not fail the others: each alone, to say whose it was
                for entry in batch:
                    try:
                        self._write_batch([entry.row])
                    except BaseException as own:
                        entry.error = own
        finally:
            for entry in batch:
                entry.done = True

    def after_fork(self) -> None:
        """In a forked child: locks another thread held at the fork would never be released."""
        self._queue = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
