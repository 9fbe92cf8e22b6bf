"""The node journal: a miss's row is durable after one ``write()``, and reaches SQLite in batches.

A SQLite commit of one node row costs 60–130 µs (BEGIN IMMEDIATE, the insert into a table
with three indexes, COMMIT to the WAL); a cheap tool call takes 300 µs. So a node row is first
appended to a journal file of this process (one checksummed record, one ``write()``: it survives
the process being killed, exactly as a commit to SQLite's WAL with ``synchronous = NORMAL``
does; both may lose their last writes to a power loss, neither is left inconsistent). A daemon
thread commits what was appended every ``delay`` seconds in one transaction and deletes the
journal file it came from; the store drains the journal before any other read or write, so
within the process every operation sees every node. Another process sees a node within
``delay`` (plus the commit), and the journal of a process that died is committed by the next
process that opens the store (:func:`recover`).

Files: ``<directory>/<pid>-<token>-<generation>.log``, each locked (``flock``) by its writer
for its lifetime, so :func:`recover` never takes the file of a live process. A batch is the
whole of one file: the writer moves on to a new file when the thread takes a batch. A record
is its length and CRC-32 (``<II``) and the row in ``marshal`` format (version 4, stable since
Python 3.4; 1.5 µs where JSON took 9): only this process's user can write the directory (0700).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import marshal
import os
import secrets
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Row = list[Any]
Commit = Callable[[Sequence[Row]], None]
"""Commits rows in one transaction (a row already stored is kept); raises if it could not."""

DEFAULT_DELAY = 0.05
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload


class _File:
    """One journal file, locked by this process, and the rows appended to it."""

    __slots__ = ("fd", "path", "rows", "size")

    def __init__(self, path: Path) -> None:
        # locked before it has the name recover looks for: recover never sees it unlocked
        making = path.with_suffix(".new")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        self.fd = os.open(making, flags, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(making, path)
        except OSError:
            os.close(self.fd)
            with suppress(OSError):
                making.unlink()
            raise
        self.path = path
        self.rows: list[Row] = []
        self.size = 0

    def append(self, record: bytes, row: Row) -> None:
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            with suppress(OSError):  # a partial record would hide every later one from recover
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(record)
        self.rows.append(row)

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)


class NodeJournal:
    """Rows appended here are durable at once and committed by ``commit`` within ``delay``."""

    def __init__(self, directory: Path, commit: Commit, *, delay: float = DEFAULT_DELAY) -> None:
        self.directory = directory
        self._commit = commit
        self._delay = delay
        self._reset()

    def _reset(self) -> None:
        self._prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._generation = 0
        self._file: _File | None = None  # the one appends go to
        self._failed: list[_File] = []  # taken, not committed yet: retried first, in order
        self._lock = threading.Lock()  # guards _file and _generation
        self._flush_lock = threading.Lock()  # one batch at a time, in order
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> bool:
        """Rows appended and not yet committed."""
        current = self._file
        return bool(self._failed) or (current is not None and bool(current.rows))

    def append(self, row: Row) -> None:
        """Make ``row`` durable (against this process's death) and queue it for the database."""
        payload = marshal.dumps(row, 4)
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._file is None:
                self._file = self._next_file()
            self._file.append(record, row)
            if self._thread is None:
                ref = weakref.ref(self)  # a journal nobody closed is collected; its thread ends
                self._thread = threading.Thread(
                    target=_run, args=(ref,), name="tvcache-journal", daemon=True
                )
                self._thread.start()
                atexit.register(_drain_at_exit, ref)
        if not self._wake.is_set():
            self._wake.set()

    def drain(self) -> None:
        """Commit every row appended so far; raises what the commit raised (rows are kept)."""
        if self.pending:
            self._flush()

    def close(self) -> None:
        """Commit what is left and stop. A file whose rows could not be committed is left,
        unlocked, for :func:`recover`; the error is raised."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        try:
            self._flush()
        finally:
            with self._lock:
                if self._file is not None and not self._file.rows:
                    self._file.remove()
                    self._file = None
                for each in (self._file, *self._failed):
                    if each is not None:
                        os.close(each.fd)
                self._file, self._failed = None, []
            with suppress(OSError):  # not empty: another process's journal, or one left
                self.directory.rmdir()

    def after_fork(self) -> None:
        """In a forked child: the parent commits its own rows; the child starts afresh.

        Only the descriptors are closed: a ``flock`` belongs to the open file, shared with
        the parent, and unlocking it here would unlock the parent's file.
        """
        for each in (self._file, *self._failed):
            if each is not None:
                with suppress(OSError):
                    os.close(each.fd)
        self._reset()

    def _next_file(self) -> _File:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for attempt in range(3):  # another process's recover may take a file being made
            self._generation += 1
            try:
                return _File(self.directory / f"{self._prefix}-{self._generation:09d}.log")
            except (BlockingIOError, FileNotFoundError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                taken = self._file if self._file is not None and self._file.rows else None
                if taken is not None:
                    self._file = None
            if taken is not None:
                self._failed.append(taken)
                if not self._closing.is_set():
                    with self._lock, suppress(OSError):  # made here, not on a miss's path;
                        if self._file is None:  # failing (a full disk), append says why
                            self._file = self._next_file()
            while self._failed:
                self._commit(self._failed[0].rows)
                self._failed.pop(0).remove()


def _run(ref: weakref.ref[NodeJournal]) -> None:
    """The journal's thread: a batch ``delay`` after the first row, until closed or collected
    (it holds the journal only while it commits)."""
    while (journal := ref()) is not None:
        wake, closing, delay = journal._wake, journal._closing, journal._delay
        del journal
        if closing.is_set():  # close() commits the rest (its wake-up may have been cleared)
            return
        if not wake.wait(1.0):
            continue
        if closing.wait(delay):  # gather a batch; close() commits the rest
            return
        wake.clear()
        journal = ref()
        if journal is None:
            return
        try:
            journal._flush()
        except Exception as error:  # the rows stay in their files; retried next time
            log.warning("tvcache: committing journaled nodes failed, will retry: %s", error)
            closing.wait(max(delay, 1.0))
            wake.set()
        del journal


def _drain_at_exit(ref: weakref.ref[NodeJournal]) -> None:
    """At interpreter exit, so that other processes see the rows without recovering them."""
    journal = ref()
    if journal is not None and journal.pending:
        try:
            journal.drain()
        except Exception as error:  # the file stays: the next open of the store recovers it
            log.warning("tvcache: journaled nodes left for the next open of the store: %s", error)


def read(path: Path) -> list[Row]:
    """The rows of one journal file, up to the first incomplete or damaged record (the one a
    process killed during its ``write()`` may leave last)."""
    data = path.read_bytes()
    rows: list[Row] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, checksum = _HEADER.unpack_from(data, offset)
        payload = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(payload) != length or zlib.crc32(payload) != checksum:
            break
        try:
            row = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            break
        if not isinstance(row, list):
            break
        rows.append(row)
        offset += _HEADER.size + length
    return rows


def recover(directory: Path, commit: Commit) -> int:
    """Commit the journals of processes that died before committing them; the rows committed.

    A journal some live process holds is skipped. ``commit`` gets one file's rows at a time,
    a process's files in the order it wrote them (a parent's row before its children's).
    """
    if not directory.is_dir():
        return 0
    for making in directory.glob("*.new"):  # a writer that died while making a file: no rows
        _remove_if_unlocked(making)
    recovered = 0
    for path in sorted(directory.glob("*.log"), key=_written_order):
        try:
            fd = _take(path)
        except OSError as error:  # another user's (a reader need not recover it): left
            log.warning("tvcache: journal %s left for its owner: %s", path, error.strerror)
            continue
        if fd is None:
            continue
        try:
            rows = read(path)
            if rows:
                commit(rows)
            recovered += len(rows)
            with suppress(FileNotFoundError):
                path.unlink()
        finally:
            os.close(fd)
    return recovered


def _take(path: Path) -> int | None:
    """A descriptor of ``path`` holding its lock; None when a live writer holds it, or when
    another process recovered (removed) it meanwhile."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_if_unlocked(path: Path) -> None:
    with suppress(OSError):
        fd = _take(path)
        if fd is not None:
            try:
                path.unlink()
            finally:
                os.close(fd)


def _written_order(path: Path) -> tuple[str, int]:
    prefix, _, generation = path.stem.rpartition("-")
    return prefix, int(generation) if generation.isdigit() else 0
