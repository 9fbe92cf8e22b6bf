"""A dump of everything a request could change in a SQLite store, to compare before and after.

Hit counters (executions, hits, seconds, last use) are left out: they are written behind, up to a
second after the call that changed them, and say nothing about what the cache serves.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

_STATS = {"executions", "hits", "exec_seconds", "seconds_saved", "last_use"}
TABLES = ("roots", "nodes", "snapshots", "snapshot_locks", "schema_version", "plan_templates")


def store_dump(home: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of ``home/cache.db`` (sorted), without hit counters."""
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
