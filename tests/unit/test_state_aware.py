"""State-aware hits on the reference environment: read-only reuse, merging, shadow checks.

The property: whatever the interleaving of rollouts over commuting and non-commuting
operations, no observation served as a hit differs from a fresh execution of the same
history (unless a nondeterministic call in that history marks it tainted).
"""

from __future__ import annotations

import pytest
from fake_env import FakeBackend, fresh_output
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, rule

from sandbox import Observation, ToolCall
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._policy import AlwaysSnapshot, CostAwarePolicy, NeverSnapshot
from tvcache._session import Session
from tvcache._settings import Settings, StateAwareness

READ_ONLY = StateAwareness(read_only=True)
MERGE = StateAwareness(read_only=True, fingerprint_tools=frozenset({"*"}))
PURE_ECHO = StateAwareness(pure_tools=frozenset({"echo"}), fingerprint_tools=frozenset({"*"}))


def engine(state: StateAwareness, policy: object = None) -> Engine:
    settings = Settings(state=state)
    return Engine(FakeBackend(), None, settings=settings, policy=policy)  # type: ignore[arg-type]


def test_read_only_call_does_not_advance_the_state() -> None:
    e = engine(READ_ONLY)
    with e.session("t") as a:
        a.call("set", k="x", v=1)
        a.call("get", k="x")
        a.call("get", k="y")
    with e.session("t") as b:
        b.call("set", k="x", v=1)
        assert b.call("get", k="y").hit  # a different order of reads: same state
        assert b.call("get", k="x").hit
        assert b.call("get", k="y").hit
    assert e.stats()["read_only_nodes"] == 2


def test_strict_prefix_misses_what_read_only_reuses() -> None:
    strict = engine(StateAwareness())
    with strict.session("t") as a:
        a.call("get", k="x")
        a.call("get", k="y")
    with strict.session("t") as b:
        assert not b.call("get", k="y").hit


def test_commuting_writes_merge_and_share_their_future() -> None:
    e = engine(MERGE)
    with e.session("t") as a:
        a.call("add", k="x", v=1)
        a.call("add", k="y", v=2)
        a.call("get", k="x")
    with e.session("t") as b:
        b.call("add", k="y", v=2)
        b.call("add", k="x", v=1)  # same state as a's after two calls: merged
        got = b.call("get", k="x")
    assert got.hit and got.output == "x=1"
    assert e.stats()["merged_nodes"] == 1


def test_non_commuting_writes_do_not_merge() -> None:
    e = engine(MERGE)
    with e.session("t") as a:
        a.call("set", k="x", v=1)
        a.call("add", k="x", v=1)
        a.call("get", k="x")
    with e.session("t") as b:
        b.call("add", k="x", v=1)
        b.call("set", k="x", v=1)
        got = b.call("get", k="x")
    assert not got.hit and got.output == "x=1"


def test_write_that_changes_nothing_is_read_only_by_fingerprint() -> None:
    e = engine(MERGE)
    with e.session("t") as a:
        a.call("set", k="x", v=0)  # a write: x did not exist
        a.call("set", k="x", v=0)  # now it is a no-op: read-only by fingerprint
    assert e.stats()["read_only_nodes"] == 1


def test_fingerprints_only_in_the_tasks_named_and_merge_can_be_off() -> None:
    only_u = engine(
        StateAwareness(fingerprint_tools=frozenset({"*"}), fingerprint_tasks=frozenset({"u"}))
    )
    for task in ("t", "u"):
        with only_u.session(task) as a:
            a.call("set", k="x", v=0)
            a.call("set", k="x", v=0)  # read-only by fingerprint, where fingerprinted
    assert only_u.stats()["read_only_nodes"] == 1
    no_merge = engine(StateAwareness(fingerprint_tools=frozenset({"*"}), merge=False))
    for first, second in (("x", "y"), ("y", "x")):
        with no_merge.session("t") as b:
            b.call("add", k=first, v=1)
            b.call("add", k=second, v=1)
    assert no_merge.stats()["merged_nodes"] == 0


def test_bad_state_settings_say_what_is_wrong() -> None:
    with pytest.raises(TvcacheError, match=r"shadow_fraction must be within \[0, 1\]"):
        StateAwareness(shadow_fraction=5)
    with pytest.raises(TvcacheError, match="fingerprint_tools must be a set of names") as caught:
        StateAwareness(fingerprint_tools="bash")  # type: ignore[arg-type]
    assert "frozenset" in (caught.value.hint or "")


def test_pure_tool_shared_across_states_and_misdeclared_write_is_caught() -> None:
    e = engine(PURE_ECHO)
    with e.session("t") as a:
        a.call("add", k="x", v=1)
        a.call("echo", k="hello")
    with e.session("t") as b:
        b.call("set", k="z", v=9)
        assert b.call("echo", k="hello").hit  # another state, same pure call
    misdeclared = engine(StateAwareness(pure_tools=frozenset({"sneak"})))
    with misdeclared.session("t") as c:
        c.call("sneak", k="x")
        assert c.call("get", k="x").output == "x=100"
    with misdeclared.session("t") as d:
        d.call("set", k="q", v=1)
        assert not d.call("sneak", k="x").hit  # not shared: it wrote
        assert d.call("get", k="x").output == "x=100"
    assert misdeclared.stats()["misdeclared_pure"] >= 1


def test_shadow_verification_catches_an_injected_wrong_observation() -> None:
    e = engine(StateAwareness(shadow_fraction=1.0), NeverSnapshot())
    with e.session("t") as a:
        a.call("set", k="x", v=1)
        wrong = a.call("get", k="x")
    node = e.graph.get(wrong.node_id)
    assert node is not None and node.observation is not None
    node.observation = Observation("x=42", 0, 1.0)  # a corrupted cache entry
    with e.session("t") as b:
        b.call("set", k="x", v=1)
        assert b.call("get", k="x").output == "x=42"  # served once...
    assert e.shadow is not None
    e.shadow.drain()
    assert e.stats()["shadow_mismatches"] == 1
    with e.session("t") as c:
        c.call("set", k="x", v=1)
        again = c.call("get", k="x")
    assert not again.hit and again.output == "x=1"  # ...then withdrawn and re-executed
    e.close()


def test_shadow_verification_passes_correct_hits() -> None:
    e = engine(StateAwareness(shadow_fraction=1.0))
    for _ in range(3):
        with e.session("t") as s:
            s.call("add", k="x", v=2)
            s.call("get", k="x")
    assert e.shadow is not None
    e.shadow.drain()
    assert e.stats()["shadow_runs"] == 4 and e.stats()["shadow_mismatches"] == 0
    e.close()


CALLS = [
    ToolCall("get", {"k": "a"}),
    ToolCall("get", {"k": "b"}),
    ToolCall("set", {"k": "a", "v": 1}),
    ToolCall("set", {"k": "a", "v": 2}),
    ToolCall("add", {"k": "a", "v": 1}),
    ToolCall("add", {"k": "b", "v": 1}),
    ToolCall("add", {"k": "a", "v": -1}),
    ToolCall("echo", {"k": "e"}),
    ToolCall("rand", {"k": "b"}),
]


class StateAwareRollouts(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    @initialize(
        state=st.sampled_from([READ_ONLY, MERGE, PURE_ECHO]),
        policy=st.sampled_from([NeverSnapshot(), AlwaysSnapshot(), CostAwarePolicy()]),
    )
    def start(self, state: StateAwareness, policy: object) -> None:
        self.engine = engine(state, policy)
        self.histories: dict[int, list[ToolCall]] = {}

    @rule(target=sessions)
    def open_session(self) -> Session:
        session = self.engine.session("task")
        self.histories[id(session)] = []
        return session

    @rule(session=sessions, call=st.sampled_from(CALLS))
    def call(self, session: Session, call: ToolCall) -> None:
        history = self.histories.get(id(session))
        if history is None:
            return
        history.append(call)
        result = session.call(call.tool, **call.args)
        if not result.tainted:
            assert result.output == fresh_output(history), (history, result)
        assert session.history == history

    @rule(session=consumes(sessions))
    def close(self, session: Session) -> None:
        session.close()
        self.histories.pop(id(session), None)


StateAwareRollouts.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestStateAwareRollouts = StateAwareRollouts.TestCase
