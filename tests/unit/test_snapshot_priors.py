"""The snapshot policy decides from costs measured on this backend, not a fixed prior: before
any fork or snapshot ran, a measured start stands in for both."""

from __future__ import annotations

import time

from fake_env import FakeBackend, FakeSandbox

from sandbox import RootSpec
from tvcache._engine import Engine
from tvcache._policy import CostAwarePolicy
from tvcache._settings import Settings


class SlowStartBackend(FakeBackend):
    """A backend whose sandboxes take ``start_seconds`` to make (like a Docker start)."""

    start_seconds: float = 0.2

    def start(self, spec: RootSpec) -> FakeSandbox:
        time.sleep(self.start_seconds)
        return super().start(spec)


def run_session(backend: FakeBackend, calls: int) -> Engine:
    engine = Engine(backend, None, settings=Settings(), policy=CostAwarePolicy())
    with engine.session("t") as session:
        for i in range(calls):
            session.call("set", k=f"k{i}", v=i)
    return engine


def test_no_checkpoint_where_replay_is_cheaper_than_the_measured_fork_and_snapshot() -> None:
    # two calls of 0.1 s: 0.2 s of replay, less than a fork plus a snapshot as dear as the
    # measured start (>= 0.2 s each); the 0.05 s prior would have checkpointed
    engine = run_session(SlowStartBackend(call_seconds=0.1), calls=2)
    stats = engine.stats()
    assert stats["snapshots"] == 0
    assert stats["fork_seconds_estimate"] >= 0.2
    assert stats["snapshot_seconds_estimate"] >= 0.2


def test_a_checkpoint_where_replay_is_dearer_than_the_measured_costs() -> None:
    # a start of microseconds: 0.08 s of replay is worth a checkpoint, though less than
    # the prior's fork plus snapshot (0.05 s + 0.05 s), which would have taken none
    engine = run_session(FakeBackend(call_seconds=0.04), calls=2)
    assert engine.stats()["snapshots"] >= 1
    assert engine.stats()["snapshot_reasons"] == {"replay_cost": engine.stats()["snapshots"]}


def test_the_prior_holds_until_anything_is_measured_and_a_measured_fork_wins() -> None:
    engine = Engine(FakeBackend(), None, settings=Settings(), policy=CostAwarePolicy())
    snapshots = engine.snapshots
    assert snapshots.fork_seconds() == snapshots.fork_estimate.value  # nothing measured
    snapshots.start_estimate.add(0.3)
    assert snapshots.fork_seconds() == 0.3 and snapshots.snapshot_seconds() == 0.3
    snapshots.fork_estimate.add(0.01)
    snapshots.snapshot_estimate.add(0.02)
    assert (snapshots.fork_seconds(), snapshots.snapshot_seconds()) == (0.01, 0.02)
