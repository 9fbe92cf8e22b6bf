"""The bundled Spider databases and tasks (from InterCode's SQL environment).

They ship compressed in ``tvcache/data/spider`` (licence notices beside them) so that the demo,
the benchmark, the framework examples and the tests need no download. Decompressed once per
process; every copy handed out is fresh, so a rollout that writes never changes another's.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from snapshots import TvcacheError

#: The packaged copy of the Spider/InterCode data; nothing else is ever read.
DATA_ARCHIVE = Path(__file__).resolve().parent / "spider" / "spider.tar.xz"


@functools.cache
def _members() -> Mapping[str, bytes]:
    """Decompress the archive once per process; everything else reads from this mapping."""
    out: dict[str, bytes] = {}
    with tarfile.open(DATA_ARCHIVE, "r:xz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                out[member.name] = handle.read()
    return out


@functools.cache
def _tasks() -> tuple[Mapping[str, str], ...]:
    """Tasks by id (list index): db, query (natural language), gold SQL, hardness."""
    return tuple(json.loads(_members()["tasks.json"]))


@functools.cache
def _traces() -> Mapping[str, Mapping[str, Sequence[str]]]:
    """Raw recorded actions: source -> task id -> actions in order."""
    traces: dict[str, dict[str, list[str]]] = json.loads(_members()["traces.json"])
    return traces


def list_databases() -> list[str]:
    """Names of the 20 packaged Spider databases, sorted."""
    return sorted(
        name.removeprefix("sqlite/").removesuffix(".sqlite")
        for name in _members()
        if name.startswith("sqlite/")
    )


def _db_bytes(db: str) -> bytes:
    data = _members().get(f"sqlite/{db}.sqlite")
    if data is None:
        raise UnknownDatabaseError(
            f"unknown Spider database {db!r}",
            f"use one of: {', '.join(list_databases())} (tvcache.data.spider_databases())",
        )
    return data


def extract_database(db: str, dest_dir: Path) -> Path:
    """Write a fresh ``<db>.sqlite`` into ``dest_dir`` (created if needed) and return its path.

    Every rollout root needs a pristine copy; the bytes come from the in-process cache, so this
    costs one file write.
    """
    data = _db_bytes(db)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{db}.sqlite"
    path.write_bytes(data)
    return path


def open_database(db: str) -> sqlite3.Connection:
    """An in-memory, writable copy of a packaged database (no file is written)."""
    conn = sqlite3.connect(":memory:")
    conn.deserialize(_db_bytes(db))
    return conn


class UnknownDatabaseError(TvcacheError, ValueError):
    """A Spider database name that is not among the bundled ones."""


@dataclass(frozen=True, slots=True)
class SpiderTask:
    """One Spider text-to-SQL task: its question, the gold SQL and the database it runs on."""

    task_id: int
    db: str
    query: str
    gold: str
    hardness: str


def spider_tasks() -> list[SpiderTask]:
    """The 1034 bundled tasks, in InterCode's order (``task_id`` is the index)."""
    return [
        SpiderTask(index, t["db"], t["query"], t["gold"], t["hardness"])
        for index, t in enumerate(_tasks())
    ]


def spider_databases() -> list[str]:
    """Names of the 20 bundled databases, sorted."""
    return list_databases()


def spider_database(db: str, directory: Path | str | None = None) -> Path:
    """A fresh copy of database ``db`` as ``<directory>/<db>.sqlite``; its path.

    Without ``directory`` the copy goes into a new temporary directory that the caller owns
    (remove it when done). Put it into a sandbox template to give every rollout the same root.
    """
    target = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="spider-"))
    return extract_database(db, target)


def open_spider_database(db: str) -> sqlite3.Connection:
    """An in-memory, writable copy of database ``db``: nothing is written to disk."""
    return open_database(db)
