"""The tool-call graph: a pure data structure, no I/O, no Docker, an injected clock.

One tree per root. A node is the state reached by one exact history; its id is a hash of
that history (see ``_keys``), so the same tree can be rebuilt from any store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sandbox import Observation, ToolCall
from snapshots import SnapshotHandle
from tvcache._keys import child_id
from tvcache._records import NodeStats

Clock = Callable[[], float]


@dataclass(eq=False, slots=True)
class Node:
    """A state of one root's environment. The root's own node has no call and no parent."""

    node_id: str
    root_id: str
    parent: Node | None
    call_key: str | None
    call: ToolCall | None
    observation: Observation | None
    depth: int
    created: float
    stats: NodeStats = field(default_factory=NodeStats)
    children: dict[str, Node] = field(default_factory=dict)
    nondeterministic: bool = False
    read_only: bool = False
    snapshot: SnapshotHandle | None = None
    lock_count: int = 0
    fingerprint: str | None = None
    alias: Node | None = None

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def state(self) -> Node:
        """The node whose state this one is in: itself, or for a read-only call its parent,
        or for a merged node the first node of the root with the same fingerprint.

        Only such state nodes are positions; read-only and merged nodes stay leaves.
        """
        if self.read_only and self.parent is not None:
            return self.parent
        return self.alias if self.alias is not None else self

    def path(self) -> list[Node]:
        """Nodes from the first call to this one (the root's own node excluded)."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        nodes.reverse()
        return nodes

    def ancestors(self) -> Iterator[Node]:
        """This node, its parent, ... up to the root's own node."""
        node: Node | None = self
        while node is not None:
            yield node
            node = node.parent

    def is_ancestor_of(self, other: Node) -> bool:
        """True when ``other`` is this node or below it."""
        if other.depth < self.depth:
            return False
        return any(node is self for node in other.ancestors())

    def deepest_snapshot(self) -> Node:
        """The deepest node on the path holding a snapshot; the root's own node at worst.

        The root always counts as snapshotted: the backend can start it from its template.
        """
        for node in self.ancestors():
            if node.snapshot is not None or node.parent is None:
                return node
        raise AssertionError("unreachable: every path ends at a root")

    def tainted(self) -> bool:
        """True when some node on the path is nondeterministic: a fresh run may differ."""
        return any(node.nondeterministic for node in self.ancestors())


def replay_seconds(ancestor: Node, node: Node) -> float:
    """Measured seconds of re-executing the calls from ``ancestor`` (exclusive) to ``node``."""
    total = 0.0
    for step in node.ancestors():
        if step is ancestor:
            return total
        if step.observation is not None:
            total += step.observation.seconds
    raise ValueError(f"node {ancestor.node_id} is not an ancestor of {node.node_id}")


def replay_seconds_to(node: Node) -> float:
    """``replay_seconds(node.parent.deepest_snapshot(), node)`` in one walk up, not two: what
    a snapshot at ``node`` (not the root's own node) would save each fork. Asked every miss."""
    total = 0.0
    step: Node | None = node
    while step is not None and step.parent is not None:
        if step.observation is not None:
            total += step.observation.seconds
        step = step.parent
        if step.snapshot is not None:
            break
    return total


def faithful_replay_seconds(ancestor: Node, node: Node) -> float | None:
    """Seconds of replaying ``ancestor`` -> ``node``; None if a step cannot be replayed
    faithfully (a nondeterministic node would put the sandbox in another state)."""
    steps = calls_between(ancestor, node)
    if any(step.nondeterministic for step in steps):
        return None
    return sum(step.observation.seconds for step in steps if step.observation is not None)


def calls_between(ancestor: Node, node: Node) -> list[Node]:
    """Nodes strictly below ``ancestor`` down to ``node``, in execution order."""
    steps: list[Node] = []
    for step in node.ancestors():
        if step is ancestor:
            steps.reverse()
            return steps
        steps.append(step)
    raise ValueError(f"node {ancestor.node_id} is not an ancestor of {node.node_id}")


class Graph:
    """All roots' trees, indexed by node id. Not thread-safe: the engine serialises mutation."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._nodes: dict[str, Node] = {}
        self._roots: dict[str, Node] = {}
        self._by_fingerprint: dict[tuple[str, str], Node] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def get(self, node_id: str) -> Node | None:
        return self._nodes.get(node_id)

    def root(self, root_id: str) -> Node | None:
        return self._roots.get(root_id)

    def roots(self) -> list[Node]:
        return list(self._roots.values())

    def nodes(self, root_id: str | None = None) -> Iterator[Node]:
        for node in self._nodes.values():
            if root_id is None or node.root_id == root_id:
                yield node

    def add_root(self, root_id: str, created: float | None = None) -> Node:
        """The root's own node (idempotent)."""
        existing = self._roots.get(root_id)
        if existing is not None:
            return existing
        node = Node(
            node_id=root_id,
            root_id=root_id,
            parent=None,
            call_key=None,
            call=None,
            observation=None,
            depth=0,
            created=self._clock() if created is None else created,
        )
        self._roots[root_id] = node
        self._nodes[root_id] = node
        return node

    def drop_root(self, root_id: str) -> int:
        """Forget a root and all its nodes (a server that lost and retook the root's lease
        reloads it from the store); how many nodes were dropped."""
        if self._roots.pop(root_id, None) is None:
            return 0
        doomed = [n for n, node in self._nodes.items() if node.root_id == root_id]
        for node_id in doomed:
            del self._nodes[node_id]
        for key in [k for k in self._by_fingerprint if k[0] == root_id]:
            del self._by_fingerprint[key]
        return len(doomed)

    def add_child(
        self,
        parent: Node,
        key: str,
        call: ToolCall,
        observation: Observation | None,
        *,
        nondeterministic: bool = False,
        created: float | None = None,
        node_id: str | None = None,
    ) -> Node:
        """The child of ``parent`` under ``key``; an existing child is returned unchanged.

        ``node_id``: ``child_id(parent.node_id, key)`` when the caller has it already (the
        engine hashed it for the store record; hashing is a miss's cost, not a free one).
        """
        existing = parent.children.get(key)
        if existing is not None:
            return existing
        node = Node(
            node_id=node_id or child_id(parent.node_id, key),
            root_id=parent.root_id,
            parent=parent,
            call_key=key,
            call=call,
            observation=observation,
            depth=parent.depth + 1,
            created=self._clock() if created is None else created,
            nondeterministic=nondeterministic,
        )
        parent.children[key] = node
        self._nodes[node.node_id] = node
        return node

    def match(self, root_id: str, keys: Sequence[str]) -> tuple[Node, int]:
        """Longest-prefix match of a history: the deepest node reached and how many keys matched."""
        node = self._roots.get(root_id)
        if node is None:
            raise KeyError(root_id)
        for matched, key in enumerate(keys):
            child = node.children.get(key)
            if child is None or child.observation is None:
                return node, matched
            node = child
        return node, len(keys)

    def set_fingerprint(self, node: Node, fingerprint: str, *, merge: bool) -> None:
        """Record ``node``'s state digest and index it.

        With ``merge`` (a node just created, still a leaf) the node is merged into the first
        node of its root with the same digest. A node that may be a session's position is
        never re-pointed: ``merge=False`` only indexes it if it is the first.
        """
        node.fingerprint = fingerprint
        if node.read_only:
            return
        first = self._by_fingerprint.setdefault((node.root_id, fingerprint), node)
        if merge and first is not node and not node.children:
            node.alias = first

    def touch(self, node: Node) -> None:
        node.stats.last_use = self._clock()

    def lock(self, node: Node) -> None:
        """Pin ``node``'s snapshot while a fork reads it: eviction skips locked snapshots."""
        node.lock_count += 1

    def unlock(self, node: Node) -> None:
        if node.lock_count <= 0:
            raise ValueError(f"node {node.node_id} is not locked")
        node.lock_count -= 1

    def snapshotted(self) -> list[Node]:
        return [node for node in self._nodes.values() if node.snapshot is not None]

    def snapshot_bytes(self) -> int:
        return sum(n.snapshot.size_bytes for n in self._nodes.values() if n.snapshot is not None)
