"""A SQLite store checkpoints its write-ahead log every 8000 pages, not at SQLite's default
1000: the checkpoint runs inside whichever node commit crosses the mark, on a miss's path."""

from __future__ import annotations

import os
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
        store.flush()  # one commit per node, as misses spread out in time make them


def test_node_commits_checkpoint_the_log_rarely(tmp_path: Path) -> None:
    """Thousands of pages of nodes stay in the log: no commit stopped at 1000 pages to copy
    it into the database (the log is then written from its start again, so its file would
    stay near 1000 pages), and the database file has not grown."""
    path = tmp_path / "cache.db"
    store = Store(f"sqlite:///{path}")
    try:
        _write_nodes(store, 1200)
        assert path.with_name(path.name + "-wal").stat().st_size > 2000 * PAGE
        assert os.path.getsize(path) < 200 * 4096
        assert store.node_count() == 1201
    finally:
        store.close()
