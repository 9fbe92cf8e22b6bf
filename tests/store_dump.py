"""A dump of everything a request could change in a SQLite store, to compare before and after.

Hit counters (executions, hits, seconds, last use) are left out: they are written behind, up to a
second after the call that changed them, and say nothing about what the cache serves.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_STATS = {"executions", "hits", "exec_seconds", "seconds_saved", "last_use"}
TABLES = ("roots", "nodes", "snapshots", "snapshot_locks", "schema_version", "plan_templates")


def journal_committed(db: Path, within: float = 10.0) -> None:
    """Wait until the node journal of the store ``db`` (of a server in another process) is
    committed: its nodes reach the database within the journal's delay (tvcache/_journal.py)."""
    journal = db.with_name(db.name + "-tvjournal")
    deadline = time.monotonic() + within
    while any(_size(path) for path in journal.glob("*.log")):
        assert time.monotonic() < deadline, f"{journal} still holds uncommitted nodes"
        time.sleep(0.01)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # committed and removed meanwhile
        return 0


def store_dump(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of ``home/cache.db`` (sorted), without hit counters."""
    journal_committed(home / "cache.db")
    db = sqlite3.connect(f"file:{home / 'cache.db'}?mode=ro", uri=True)
    try:
        dump = {}
        for table in TABLES:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(c for c in columns if c not in _STATS)
            dump[table] = sorted(db.execute(f"SELECT {kept} FROM {table}"), key=repr)
        return dump
    finally:
        db.close()
