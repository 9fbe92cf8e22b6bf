"""State fingerprints: digests of everything that can change a later observation.

Two environments with equal fingerprints must answer every future call alike, so tvcache
may merge them. A SQLite database is digested by its logical content (schema, rows in rowid
order, user_version), not its bytes: the file's change counter and page layout differ between
histories that leave the same data.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from snapshots.directory import tree_digest

SQLITE_MAGIC = b"SQLite format 3\x00"
K = TypeVar("K")


def sqlite_content_digest(path: str, *, immutable: bool = False) -> bytes | None:
    """The digest of a SQLite file's logical content; None if it is not a readable database.

    ``immutable`` reads without locks or side files: for files another kernel object owns
    (an overlay layer), where SQLite must not create a ``-shm`` beside the database.
    """
    try:
        with open(path, "rb") as handle:
            if handle.read(16) != SQLITE_MAGIC:
                return None
        flags = "mode=ro&immutable=1" if immutable else "mode=ro"
        conn = sqlite3.connect(f"file:{quote(path)}?{flags}", uri=True)
    except (OSError, sqlite3.Error):
        return None
    digest = hashlib.sha256(b"tvcache-sqlite-v1\0")
    try:
        conn.text_factory = bytes
        digest.update(repr(conn.execute("PRAGMA user_version").fetchone()).encode())
        schema = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        digest.update(repr(schema).encode())
        for kind, name, _table, sql in schema:
            if kind != b"table":
                continue
            quoted = '"' + name.decode("utf-8", "replace").replace('"', '""') + '"'
            order = "" if b"WITHOUT ROWID" in (sql or b"").upper() else " ORDER BY rowid"
            rowid = "" if order == "" else "rowid, "
            digest.update(b"table\0" + name + b"\0")
            for row in conn.execute(f"SELECT {rowid}* FROM {quoted}{order}"):
                digest.update(repr(row).encode() + b"\n")
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return digest.digest()


def order_times(times: Mapping[K, int], since: int, until: int) -> dict[K, tuple[str, int]]:
    """Modification times as a state holds them: clock times by rank, the others as they are.

    Times taken from the clock (in ``[since, until]``) differ between any two runs of one
    history, as ``date`` does, so their values are not state; their order is (``make``,
    ``ls -t`` and ``find -newer`` read it). Times set on purpose (``touch -d``, ``tar x``,
    files of the image) count by value. Seconds: ``fs`` snapshots keep no more (Docker's tar).
    """
    clock = sorted({t for t in times.values() if since <= t <= until})
    rank = {t: i for i, t in enumerate(clock)}
    return {key: ("rank", rank[t]) if t in rank else ("at", t) for key, t in times.items()}


def directory_fingerprint(home: Path, shell_state: str, times_since: int = 0) -> str:
    """A directory's content (SQLite files by logical content), the order of its modification
    times (see :func:`order_times`; ``times_since``: the newest time of the template), and the
    shell's state."""
    mtimes: dict[str, int] = {}
    content = tree_digest(home, sqlite_content_digest, mtimes)
    times = order_times(mtimes, times_since, int(time.time()) + 1)
    text = f"{content}\0{sorted(times.items())!r}\0{shell_state}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]
