"""WAL checkpoints of a SQLite store in a thread of their own, off every call's path.

SQLite's automatic checkpoint runs inside the commit that finds the write-ahead log past
1000 pages: it copies the log into the database and syncs both files, 5-80 ms on a loaded
machine, paid by whichever miss commits its node at that moment (half of all node-commit
time in ``tvcache bench sql``). The store's node connection runs with the automatic
checkpoint off; it tells :class:`Checkpointer` of its commits, and every ``every`` commits
the checkpointer's thread looks at the log's size and, past ``pages`` pages, runs a
``PASSIVE`` checkpoint, which never waits for (nor blocks) readers and writers. This is the
arrangement SQLite's documentation describes for applications that cannot afford a
checkpoint in a commit (https://www.sqlite.org/wal.html, "Application-Initiated Checkpoints").

Durability is unchanged: a commit in WAL mode survives a process crash once it is in the
log; the checkpoint only moves it into the database file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_FRAME_HEADER = 24  # bytes before each page in the log
_LOG_HEADER = 32
_ORPHANS: list[sqlite3.Connection] = []  # a forked child's copies: never used nor closed


class Checkpointer:
    """Runs PASSIVE checkpoints of the database at ``path`` when its log grows past
    ``pages`` pages, looking every ``every`` commits. Thread-safe; the thread starts at the
    first look and ends at :meth:`close`."""

    def __init__(self, path: Path, *, pages: int = 1000, every: int = 64) -> None:
        if pages < 1 or every < 1:
            raise ValueError(f"pages and every must be positive, got {pages} and {every}")
        self.path = path
        self.pages = pages
        self.every = every
        self.checkpoints = 0  # completed checkpoint runs (for tests and stats)
        self._wal = path.with_name(path.name + "-wal")
        self._commits = 0
        self._lock = threading.Lock()  # guards _thread, _closed and _commits
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def committed(self) -> None:
        """One commit was written to the log (cheap: a counter, and every ``every`` a wake-up)."""
        with self._lock:
            self._commits += 1
            if self._commits < self.every or self._closed:
                return
            self._commits = 0
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tvcache-wal-checkpoint", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                break
            try:
                self._checkpoint_if_large()
            except sqlite3.Error as error:  # the next look retries; SQLite keeps the log whole
                log.warning("tvcache: checkpoint of %s failed, will retry: %s", self.path, error)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _checkpoint_if_large(self) -> None:
        try:
            size = self._wal.stat().st_size
        except FileNotFoundError:
            return
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        if size < _LOG_HEADER + self.pages * (page_size + _FRAME_HEADER):
            return
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.checkpoints += 1

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running). Idempotent."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join()

    def after_fork(self) -> None:
        """In a forked child: the thread is gone and its connection is the parent's."""
        if self._conn is not None:
            _ORPHANS.append(self._conn)
            self._conn = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self._commits = 0
