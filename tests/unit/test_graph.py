"""The graph is a pure data structure: tested with no backend, a fixed clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Observation, ToolCall, ToolSpec
from snapshots import SnapshotHandle
from tvcache._graph import Graph, Node, calls_between, replay_seconds, replay_seconds_to
from tvcache._keys import call_key, canonical_json, child_id

SPEC = ToolSpec("bash", version="1", volatile=frozenset({"timeout"}))


def obs(seconds: float) -> Observation:
    return Observation("out", 0, seconds)


def chain(graph: Graph, root: Node, commands: list[str], seconds: float = 1.0) -> list[Node]:
    nodes, node = [], root
    for command in commands:
        call = ToolCall("bash", {"command": command})
        node = graph.add_child(node, call_key(SPEC, call.args), call, obs(seconds))
        nodes.append(node)
    return nodes


def test_call_key_ignores_volatile_args_and_key_order() -> None:
    a = call_key(SPEC, {"command": "ls", "timeout": 5, "x": {"b": 1, "a": 2}})
    b = call_key(SPEC, {"x": {"a": 2, "b": 1}, "command": "ls", "timeout": 99})
    assert a == b
    assert a != call_key(SPEC, {"command": "ls -l"})
    assert a != call_key(ToolSpec("bash", version="2"), {"command": "ls", "x": {"a": 2, "b": 1}})


def test_canonical_json_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_node_ids_are_history_hashes() -> None:
    graph = Graph(lambda: 0.0)
    root = graph.add_root("r")
    a, b = chain(graph, root, ["x", "y"])
    assert a.node_id == child_id("r", a.call_key or "")
    assert b.node_id == child_id(a.node_id, b.call_key or "")
    other = Graph(lambda: 0.0)
    again = chain(other, other.add_root("r"), ["x", "y"])
    assert [n.node_id for n in again] == [a.node_id, b.node_id]


def test_add_child_is_idempotent_and_match_is_longest_prefix() -> None:
    graph = Graph(lambda: 0.0)
    root = graph.add_root("r")
    nodes = chain(graph, root, ["a", "b", "c"])
    assert chain(graph, root, ["a"])[0] is nodes[0]
    keys = [n.call_key or "" for n in nodes]
    assert graph.match("r", keys) == (nodes[2], 3)
    assert graph.match("r", [*keys[:2], "zzz", keys[2]]) == (nodes[1], 2)
    assert graph.match("r", []) == (root, 0)
    with pytest.raises(KeyError):
        graph.match("missing", keys)


def test_deepest_snapshot_and_replay_cost() -> None:
    graph = Graph(lambda: 0.0)
    root = graph.add_root("r")
    nodes = chain(graph, root, ["a", "b", "c", "d"], seconds=2.0)
    assert nodes[3].deepest_snapshot() is root
    assert replay_seconds(root, nodes[3]) == 8.0
    nodes[1].snapshot = SnapshotHandle("s", "fake", "fs", "x", 10)
    assert nodes[3].deepest_snapshot() is nodes[1]
    assert replay_seconds(nodes[1], nodes[3]) == 4.0
    assert calls_between(nodes[1], nodes[3]) == nodes[2:]
    assert nodes[1].deepest_snapshot() is nodes[1]
    with pytest.raises(ValueError):
        replay_seconds(nodes[3], nodes[1])


def test_ancestry_taint_and_path() -> None:
    graph = Graph(lambda: 0.0)
    root = graph.add_root("r")
    a, b, c = chain(graph, root, ["a", "b", "c"])
    (d,) = chain(graph, a, ["d"])
    assert a.is_ancestor_of(c) and not c.is_ancestor_of(a) and not b.is_ancestor_of(d)
    assert c.path() == [a, b, c]
    assert not c.tainted()
    b.nondeterministic = True
    assert c.tainted() and not d.tainted()


def test_locks_count_and_refuse_underflow() -> None:
    graph = Graph(lambda: 0.0)
    (a,) = chain(graph, graph.add_root("r"), ["a"])
    graph.lock(a)
    graph.lock(a)
    graph.unlock(a)
    assert a.lock_count == 1
    graph.unlock(a)
    with pytest.raises(ValueError):
        graph.unlock(a)


def test_snapshot_bytes_and_clock() -> None:
    now = [5.0]
    graph = Graph(lambda: now[0])
    root = graph.add_root("r")
    a, b = chain(graph, root, ["a", "b"])
    a.snapshot = SnapshotHandle("s1", "fake", "fs", "x", 10)
    b.snapshot = SnapshotHandle("s2", "fake", "fs", "y", 32)
    assert graph.snapshot_bytes() == 42
    assert set(graph.snapshotted()) == {a, b}
    now[0] = 9.0
    graph.touch(a)
    assert a.stats.last_use == 9.0 and a.created == 5.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_replay_to_a_node_in_one_walk_is_replay_from_the_parents_deepest_snapshot(
    steps: list[tuple[float, bool, bool]],
) -> None:
    graph = Graph(lambda: 0.0)
    node = graph.add_root("r")
    for i, (seconds, snapshotted, no_observation) in enumerate(steps):
        call = ToolCall("bash", {"command": str(i)})
        node = graph.add_child(node, call_key(SPEC, call.args), call, obs(seconds))
        node.observation = None if no_observation else node.observation
        node.snapshot = SnapshotHandle(f"s{i}", "fake", "fs", "x", 1) if snapshotted else None
        assert node.parent is not None
        expected = replay_seconds(node.parent.deepest_snapshot(), node)
        assert replay_seconds_to(node) == expected
