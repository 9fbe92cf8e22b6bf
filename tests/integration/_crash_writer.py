"""Writes nodes into a store in a loop, printing each node id once put_node has returned.

The crash test SIGKILLs this process at random moments: every printed id must survive.
Each node is derived from its parent and a label, so the test can rebuild what it must hold.
Usage: python _crash_writer.py STORE_URL SEED
"""

from __future__ import annotations

import hashlib
import random
import sys

from sandbox import Observation, RootSpec, ToolCall
from tvcache._records import NodeRecord, NodeStats, RootRecord
from tvcache._store import StatsWriter, Store

ROOT = RootRecord("crash-root", RootSpec(task_id="crash", options={"n": 1}), "identity", 1.0)
ROOT_NODE_ID = hashlib.sha256(b"crash-root").hexdigest()


def make_node(parent_id: str | None, depth: int, label: str) -> NodeRecord:
    """The node of ``label`` under ``parent_id``; its id is a hash of both."""
    if parent_id is None:
        return NodeRecord(ROOT_NODE_ID, ROOT.root_id, None, 0, None, None, None, False, False,
                          NodeStats(), 1.0)  # fmt: skip
    node_id = hashlib.sha256(f"{parent_id}/{label}".encode()).hexdigest()
    rnd = random.Random(node_id)
    size = rnd.choice([0, 10, 3000, 70_000])
    output = (node_id * (size // 64 + 1))[:size] + ("\x00é" if rnd.random() < 0.3 else "")
    call = ToolCall("bash", {"command": f"echo {label}", "label": label})
    observation = Observation(output, exit_code=rnd.randint(0, 2), seconds=rnd.random(),
                              truncated=rnd.random() < 0.2)  # fmt: skip
    return NodeRecord(node_id, ROOT.root_id, parent_id, depth, f"key-{label}", call, observation,
                      rnd.random() < 0.1, False, NodeStats(), rnd.random() * 1e9)  # fmt: skip


def main(url: str, seed: int) -> None:
    store = Store(url)
    store.put_root(ROOT)
    known = [(node.node_id, node.depth) for node in store.load_nodes(ROOT.root_id)]
    if not known:
        store.put_node(make_node(None, 0, ""))
        known = [(ROOT_NODE_ID, 0)]
    writer = StatsWriter(store, interval=0.005)  # a second writing thread, killed mid-flight too
    rnd = random.Random(seed)
    print("ready", flush=True)
    for i in range(1_000_000):
        parent_id, depth = rnd.choice(known[-30:])
        node = make_node(parent_id, depth + 1, f"{seed}-{i}")
        store.put_node(node)
        print(node.node_id, flush=True)
        known.append((node.node_id, node.depth))
        writer.mark(node.node_id, NodeStats(executions=1, hits=i, exec_seconds=0.5, last_use=i))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
