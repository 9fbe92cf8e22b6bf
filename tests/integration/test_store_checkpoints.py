"""A SQLite store's write-ahead log is checkpointed by a thread of its own, never by the commit
of a node on a miss's path (tvcache/_wal.py), and checkpoints still happen."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sandbox import Observation, RootSpec, ToolCall
from tvcache._records import NodeRecord, NodeStats, RootRecord
from tvcache._store import Store

PAGE = 4096 + 24  # a page in the log, with its frame header
OUTPUT = "x" * 3000  # about one page of the nodes table per node


def _write_nodes(store: Store, count: int) -> None:
    spec = RootSpec(task_id="t", backend="local", template=None)
    store.put_root(RootRecord("r", spec, "id", 0.0))
    store.put_node(NodeRecord("r", "r", None, 0, None, None, None, False, False, NodeStats(), 0.0))
    for i in range(count):
        call = ToolCall("sqlite", {"sql": f"SELECT {i}"})
        observation = Observation(output=OUTPUT, seconds=0.001)
        stats = NodeStats(executions=1)
        record = NodeRecord(
            f"n{i}", "r", "r", 1, f"k{i}", call, observation, False, False, stats, 1.0
        )
        store.put_node(record)


def test_node_commits_never_checkpoint(tmp_path: Path) -> None:
    """With the background threshold out of reach the log grows far past SQLite's automatic
    checkpoint (1000 pages, after which the log is written from its start again): no commit
    of a node copied the log into the database."""
    path = tmp_path / "cache.db"
    store = Store(f"sqlite:///{path}", checkpoint_pages=10**9)
    try:
        _write_nodes(store, 1200)
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 2000 * PAGE
        assert store.node_count() == 1201
    finally:
        store.close()


def test_the_log_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """Past the threshold the checkpointer moves the log into the database file (which stays
    tiny without a checkpoint: every node lives in the log until then)."""
    path = tmp_path / "cache.db"
    store = Store(f"sqlite:///{path}", checkpoint_pages=50)
    try:
        _write_nodes(store, 400)
        deadline = time.monotonic() + 30
        while os.path.getsize(path) < 300 * 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) >= 300 * 4096
    finally:
        store.close()
    reopened = Store(f"sqlite:///{path}")
    try:
        assert reopened.node_count() == 401
    finally:
        reopened.close()
