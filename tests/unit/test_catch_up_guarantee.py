"""The guarantee across servers, property-based: an engine that caught up with nodes another
engine stored in the shared store (a session moved to it) never serves a wrong observation."""

from __future__ import annotations

import tempfile

from fake_env import FakeBackend, fresh_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import ToolCall
from tvcache._engine import Engine
from tvcache._policy import NeverSnapshot
from tvcache._store import Store

CALLS = [
    ToolCall("get", {"k": "a"}),
    ToolCall("set", {"k": "a", "v": 1}),
    ToolCall("add", {"k": "a", "v": 1}),
    ToolCall("add", {"k": "b", "v": 3}),
    ToolCall("rand", {"k": "b"}),
    ToolCall("bg", {"k": "a"}),
]
histories = st.lists(st.lists(st.sampled_from(CALLS), min_size=1, max_size=6), max_size=5)


def run(engine: Engine, history: list[ToolCall]) -> list[str]:
    """Node ids of ``history`` on ``engine``; every untainted answer checked against a fresh
    environment's."""
    ids = []
    with engine.session("task") as session:
        for i, call in enumerate(history):
            result = session.call(call.tool, **call.args)
            if not result.tainted:
                assert result.output == fresh_output(history[: i + 1])
            ids.append(result.node_id)
    return ids


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(histories, histories, histories, st.data())
def test_caught_up_nodes_serve_only_right_observations(
    before: list[list[ToolCall]],
    elsewhere: list[list[ToolCall]],
    after: list[list[ToolCall]],
    data: st.DataObject,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(f"sqlite:///{tmp}/cache.db") as store:
        here = Engine(FakeBackend(), store, policy=NeverSnapshot())
        there = Engine(FakeBackend(), store, policy=NeverSnapshot())
        try:
            here.session("task").close()  # as a server opens the root before catching up
            for history in before:
                run(here, history)  # ``here`` loaded the root and some nodes
            recorded = [node for history in elsewhere for node in run(there, history)]
            for node_id in data.draw(st.lists(st.sampled_from(recorded))) if recorded else []:
                own = here.graph.get(node_id)
                caught = here.catch_up(node_id)
                stored = store.get_node(node_id)
                assert caught is not None and stored is not None, node_id
                if own is None:  # added as stored (a node it had is left as it was)
                    assert caught.observation == stored.observation
                    assert caught.nondeterministic == stored.nondeterministic
            for history in after:
                run(here, history)
        finally:
            here.close()
            there.close()
