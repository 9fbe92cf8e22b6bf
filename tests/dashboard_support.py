"""Stores built directly for the dashboard's tests: a 100,000-node root in seconds.

Rows are the store's own (``schema.node_row``, as ``Store.put_node`` writes them), inserted
with one executemany instead of one transaction per node.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import Observation, RootSpec, ToolCall
from snapshots import SnapshotHandle
from tvcache import _schema as schema
from tvcache._records import NodeRecord, NodeStats, RootRecord
from tvcache._store import Store


@dataclass
class Shape:
    """A tree given as parent indexes: ``parents[i]`` is node i's parent (-1: the root)."""

    parents: list[int]
    nondeterministic: set[int] = field(default_factory=set)
    read_only: set[int] = field(default_factory=set)
    snapshots: set[int] = field(default_factory=set)
    fingerprints: dict[int, str] = field(default_factory=dict)
    withdrawn: set[int] = field(default_factory=set)

    def node_id(self, index: int) -> str:
        return f"n{index:07d}"


def wide_tree(total: int, fanout: int) -> Shape:
    """``total`` nodes, breadth first, each parent with ``fanout`` children."""
    return Shape([-1 if i < fanout else i // fanout - 1 for i in range(total)])


def build(path: Path, shape: Shape, task: str = "big", root_id: str = "r" * 16) -> str:
    """Write a root and ``shape``'s nodes into the SQLite store at ``path``; returns the root
    id. Rows are the store's own (``schema.node_row``), inserted with one executemany."""
    Store(f"sqlite:///{path}").close()  # creates the schema
    columns = [c.name for c in schema.nodes.columns]
    rows = [tuple(_root_node(root_id)[c] for c in columns)]
    depth: list[int] = []
    for i, parent in enumerate(shape.parents):
        depth.append(1 if parent < 0 else depth[parent] + 1)
        observed = None if i in shape.withdrawn else Observation(f"{i}\n", 0, 0.25)
        record = NodeRecord(
            node_id=shape.node_id(i),
            root_id=root_id,
            parent_id=root_id if parent < 0 else shape.node_id(parent),
            depth=depth[i],
            call_key=f"k{i}",
            call=ToolCall("bash", {"command": f"echo {i}"}),
            observation=observed,
            nondeterministic=i in shape.nondeterministic,
            read_only=i in shape.read_only,
            stats=NodeStats(1, i % 3, 0.25, 0.25 * (i % 3)),
            created=1000.0 + i,
            fingerprint=shape.fingerprints.get(i),
        )
        row = schema.node_row(record)
        rows.append(tuple(row[c] for c in columns))
    spec = RootSpec(task, "local", "/nowhere", {})
    root = schema.root_row(RootRecord(root_id, spec, "id", 1.0))
    snaps = [_snapshot_row(root_id, shape.node_id(i), i) for i in sorted(shape.snapshots)]
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"INSERT INTO roots ({', '.join(root)}) VALUES ({', '.join('?' * len(root))})",
            tuple(root.values()),
        )
        marks = ", ".join("?" * len(columns))
        conn.executemany(f"INSERT INTO nodes ({', '.join(columns)}) VALUES ({marks})", rows)
        for snap in snaps:
            conn.execute(
                f"INSERT INTO snapshots ({', '.join(snap)}) VALUES ({', '.join('?' * len(snap))})",
                tuple(snap.values()),
            )
    conn.close()
    return root_id


def _root_node(root_id: str) -> dict[str, object]:
    record = NodeRecord(root_id, root_id, None, 0, None, None, None, False, False, NodeStats(), 1.0)
    return schema.node_row(record)


def _snapshot_row(root_id: str, node_id: str, index: int) -> dict[str, object]:
    handle = SnapshotHandle(
        snapshot_id=f"s{index}", backend="local", level="fs", location=f"/snap/{index}",
        size_bytes=1000 + index, meta={},
    )  # fmt: skip
    return {"node_id": node_id, "root_id": root_id, "handle": handle.to_json(),
            "size_bytes": handle.size_bytes, "created": 2000.0}  # fmt: skip
