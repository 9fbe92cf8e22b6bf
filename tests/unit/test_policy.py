"""CostAwarePolicy weighs a snapshot's expected uses: unused snapshots raise its bar."""

from __future__ import annotations

import itertools
import types

import pytest
from fake_env import FakeBackend
from hypothesis import given
from hypothesis import strategies as st

import tvcache._snapshots as snapshots_module
from sandbox import ToolCall
from tvcache._engine import Engine
from tvcache._graph import Graph, Node
from tvcache._policy import CostAwarePolicy, Moment, SnapshotContext
from tvcache._settings import Settings


def node(*, nondeterministic: bool = False) -> Node:
    graph = Graph(lambda: 0.0)
    root = graph.add_root("r")
    call = ToolCall("add", {"k": "x", "v": 1})
    return graph.add_child(root, "k", call, None, nondeterministic=nondeterministic)


def ctx(
    replay: float,
    *,
    moment: Moment = "after_call",
    taken: int = 0,
    forks: int = 0,
    nondeterministic: bool = False,
) -> SnapshotContext:
    return SnapshotContext(
        node=node(nondeterministic=nondeterministic),
        moment=moment,
        replay_seconds=replay,
        fork_seconds=0.005,
        snapshot_seconds=0.010,
        snapshots_taken=taken,
        snapshot_forks=forks,
    )


def test_without_history_the_prior_is_one_use_after_a_call_and_two_at_a_branch() -> None:
    policy = CostAwarePolicy()
    assert policy.should_snapshot(ctx(0.016)) == "replay_cost"  # > 5 ms fork + 10 ms snapshot
    assert policy.should_snapshot(ctx(0.014)) is None
    assert policy.should_snapshot(ctx(0.011, moment="branch")) == "branch"  # > 5 + 10 / 2
    assert policy.should_snapshot(ctx(0.009, moment="branch")) is None


def test_unused_snapshots_raise_the_bar() -> None:
    """The cascade: cheap measured costs used to checkpoint every node past ~15 ms."""
    policy = CostAwarePolicy()
    assert policy.should_snapshot(ctx(0.05, taken=100, forks=3)) is None  # 25 ms of uses
    assert policy.should_snapshot(ctx(0.05, moment="branch", taken=100, forks=3)) is None
    assert policy.should_snapshot(ctx(0.5, taken=100, forks=3)) == "replay_cost"


def test_used_snapshots_keep_the_bar_low() -> None:
    policy = CostAwarePolicy()
    assert policy.should_snapshot(ctx(0.009, taken=10, forks=40)) == "replay_cost"  # > 5 + 10/3.7


@given(
    replay=st.floats(0, 100),
    moment=st.sampled_from(["branch", "after_call"]),
    taken=st.integers(0, 10_000),
    forks=st.integers(0, 10_000),
)
def test_nondeterministic_nodes_are_always_checkpointed(
    replay: float, moment: Moment, taken: int, forks: int
) -> None:
    got = CostAwarePolicy().should_snapshot(
        ctx(replay, moment=moment, taken=taken, forks=forks, nondeterministic=True)
    )
    assert got == "nondeterministic"


@given(
    replay=st.floats(0, 10),
    more=st.floats(0, 10),
    moment=st.sampled_from(["branch", "after_call"]),
    taken=st.integers(0, 1000),
    forks=st.integers(0, 1000),
    unused=st.integers(0, 1000),
    used=st.integers(0, 1000),
)
def test_the_decision_is_monotone_in_replay_and_in_evidence(
    replay: float, more: float, moment: Moment, taken: int, forks: int, unused: int, used: int
) -> None:
    """More replay or more forks served never refuses what was taken; more unused
    snapshots never takes what was refused."""
    policy = CostAwarePolicy()
    takes = policy.should_snapshot(ctx(replay, moment=moment, taken=taken, forks=forks))
    if takes:
        assert policy.should_snapshot(ctx(replay + more, moment=moment, taken=taken, forks=forks))
        assert policy.should_snapshot(ctx(replay, moment=moment, taken=taken, forks=forks + used))
    else:
        assert not policy.should_snapshot(
            ctx(replay, moment=moment, taken=taken + unused, forks=forks)
        )


def test_factors_keep_their_meaning() -> None:
    """A factor of 0 checkpoints whatever replays more than a fork; a huge one never."""
    assert CostAwarePolicy(0.0, 0.0).should_snapshot(ctx(0.006, taken=10**6)) == "replay_cost"
    assert CostAwarePolicy(1e9, 1e9).should_snapshot(ctx(1e3, moment="branch")) is None


# --------------------------------------------------------------- in the engine


@pytest.fixture
def five_ms_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every measured start, fork and snapshot takes 5 ms (a mock of the clock only)."""
    ticks = itertools.count()
    fake = types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.0025)
    monkeypatch.setattr(snapshots_module, "time", fake)


def engine(call_seconds: float) -> Engine:
    settings = Settings(snapshot_budget_bytes=10**9)
    return Engine(FakeBackend(call_seconds=call_seconds), None, settings=settings)


@pytest.mark.usefixtures("five_ms_costs")
def test_snapshots_nobody_forks_from_stop_being_taken() -> None:
    """40 rollouts that never come back: the old bar (replay > fork + snapshot, once both
    were measured cheap) checkpointed every ~55 ms of replay: 119 snapshots for 0 forks."""
    e = engine(call_seconds=0.01)
    for task in range(40):
        with e.session(f"t{task}") as s:
            for v in range(20):
                s.call("add", k="x", v=v)
    stats = e.stats()
    assert stats["forks"] == 0
    assert stats["snapshots"] <= 60, stats["snapshot_reasons"]
    assert e.snapshots.uses["after_call"].taken == stats["snapshots"]


@pytest.mark.usefixtures("five_ms_costs")
def test_snapshots_that_serve_forks_keep_being_taken() -> None:
    """Rollouts of one task come back to a shared prefix: its snapshots are forked from,
    the rate stays high, and later divergences are checkpointed too."""
    e = engine(call_seconds=0.01)
    for rollout in range(30):
        with e.session("t") as s:
            for v in range(12):
                s.call("add", k="x", v=v)
            s.call("set", k="y", v=rollout)  # a new leaf: a fork near the end of the prefix
    uses = e.snapshots.uses
    forks = uses["branch"].forks + uses["after_call"].forks
    assert uses["after_call"].taken >= 1 and uses["branch"].taken == 1  # the prefix's end
    assert forks >= 25 and e.stats()["forks"] == forks
    assert e.stats()["replayed_calls"] <= 2 * 30


def test_nondeterministic_snapshots_do_not_count_as_evidence() -> None:
    e = engine(call_seconds=1.0)
    with e.session("t") as s:
        s.call("rand", k="x")
    assert e.stats()["snapshot_reasons"] == {"nondeterministic": 1}
    assert e.snapshots.uses["after_call"].taken == 0
