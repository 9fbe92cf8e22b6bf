"""The engine on the deterministic fake environment: serving, single flight, replay, budget."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import pytest
from fake_env import FakeBackend, FakeSandbox, fresh_output

from sandbox import Observation, ToolCall, ToolCallError
from tvcache._engine import Engine
from tvcache._factory import open_engine
from tvcache._policy import AlwaysSnapshot, CostAwarePolicy, NeverSnapshot
from tvcache._settings import Settings
from tvcache._snapshots import Counters
from tvcache._store import Store


def engine(policy: object = None, budget: int = 10**9, **backend_args: float) -> Engine:
    settings = Settings(snapshot_budget_bytes=budget)
    return Engine(FakeBackend(**backend_args), None, settings=settings, policy=policy)  # type: ignore[arg-type]


def backend_of(e: Engine) -> FakeBackend:
    assert isinstance(e.backend, FakeBackend)
    return e.backend


def test_hit_touches_no_sandbox() -> None:
    e = engine(AlwaysSnapshot())
    with e.session("t") as first:
        first.call("set", k="a", v=1)
        first.call("get", k="a")
    runs, starts, forks = len(backend_of(e).runs), backend_of(e).starts, backend_of(e).forks
    with e.session("t") as second:
        r1 = second.call("set", k="a", v=1)
        r2 = second.call("get", k="a")
    assert (r1.hit, r2.hit) == (True, True)
    assert r2.output == "a=1" and r2.seconds_saved == 1.0
    assert (len(backend_of(e).runs), backend_of(e).starts, backend_of(e).forks) == (
        runs,
        starts,
        forks,
    )
    assert e.stats()["hits"] == 2 and e.stats()["seconds_saved"] == 2.0


def test_history_decides_not_the_call() -> None:
    e = engine()
    with e.session("t") as a, e.session("t") as b:
        a.call("set", k="x", v=1)
        b.call("set", k="x", v=2)
        assert a.call("get", k="x").output == "x=1"
        got = b.call("get", k="x")
    assert got.output == "x=2" and not got.hit


def test_different_tasks_never_share() -> None:
    e = engine()
    with e.session("t1") as a, e.session("t2") as b:
        a.call("set", k="x", v=1)
        assert not b.call("set", k="x", v=1).hit


def test_miss_after_hits_forks_nearest_snapshot_and_replays_the_rest() -> None:
    e = engine(NeverSnapshot())
    with e.session("t") as a:
        for v in range(4):
            a.call("add", k="x", v=v)
    fake = backend_of(e)
    fake.runs.clear()
    with e.session("t") as b:
        for v in range(4):
            assert b.call("add", k="x", v=v).hit
        assert b.call("get", k="x").output == "x=6"
    # no snapshot anywhere: a fresh start, four replayed calls, then the new call
    assert [c.tool for c in fake.runs] == ["add"] * 4 + ["get"]
    assert e.stats()["replayed_calls"] == 4


def test_bound_sandbox_catches_up_when_cheaper_than_a_fork() -> None:
    e = engine(NeverSnapshot())
    with e.session("t") as a:
        a.call("add", k="x", v=1)
        a.call("add", k="x", v=2)
    with e.session("t") as b:
        b.call("set", k="y", v=5)  # miss: b gets a sandbox at its first node
        starts = backend_of(e).starts
        a2 = e.session("t")
        a2.call("set", k="y", v=5)  # hit
        a2.close()
        b.call("add", k="y", v=1)  # miss at b's own position: no new sandbox
    assert backend_of(e).starts == starts
    assert e.stats()["catch_ups"] == 0


def test_single_flight_threads_run_once() -> None:
    fake = FakeBackend()
    gate = threading.Event()
    original = FakeSandbox.run

    def slow_run(self: FakeSandbox, call: ToolCall, timeout: float | None = None) -> Observation:
        if call.tool == "add":
            gate.wait(5)
        return original(self, call, timeout)

    e = Engine(fake, None)
    sessions = [e.session("t") for _ in range(6)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeSandbox, "run", slow_run)
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(s.call, "add", k="x", v=1) for s in sessions]
            threading.Timer(0.3, gate.set).start()
            results = [f.result(10) for f in futures]
    assert sum(1 for c in fake.runs if c.tool == "add") == 1
    assert sum(not r.hit for r in results) == 1
    assert {r.output for r in results} == {"x=1"}
    assert e.stats()["shared_hits"] == 5


def test_single_flight_asyncio() -> None:
    e = engine()

    async def main() -> list[bool]:
        sessions = [e.session("t") for _ in range(4)]
        results = await asyncio.gather(*(s.acall("add", k="x", v=3) for s in sessions))
        again = await sessions[0].acall("get", k="x")
        assert again.output == "x=3"
        return [r.hit for r in results]

    hits = asyncio.run(main())
    assert hits.count(False) == 1
    assert sum(1 for c in backend_of(e).runs if c.tool == "add") == 1


def test_replay_divergence_marks_node_nondeterministic() -> None:
    e = engine(NeverSnapshot())
    with e.session("t") as a:
        a.call("drift", k="x")  # undeclared nondeterminism
        a.call("get", k="x")
    with e.session("t") as b:
        first = b.call("drift", k="x")
        assert first.hit and not first.tainted
        b.call("get", k="y")  # a miss: forks the root, replays drift -> differs
    drift_node = e.graph.get(first.node_id)
    assert drift_node is not None and drift_node.nondeterministic
    assert e.stats()["divergences"] == 1
    with e.session("t") as c:
        c.call("drift", k="x")
        assert c.call("get", k="x").tainted


def test_declared_nondeterministic_node_is_snapshotted_on_first_execution() -> None:
    e = engine(CostAwarePolicy(replay_factor=1e9, branch_factor=1e9))
    with e.session("t") as a:
        a.call("set", k="x", v=1)
        r = a.call("rand", k="x")
        a.call("get", k="x")
    node = e.graph.get(r.node_id)
    assert node is not None and node.snapshot is not None and node.nondeterministic
    assert e.stats()["snapshot_reasons"] == {"nondeterministic": 1}
    fake = backend_of(e)
    fake.runs.clear()
    with e.session("t") as b:
        b.call("set", k="x", v=1)
        b.call("rand", k="x")
        after = b.call("add", k="x", v=1)
    assert [c.tool for c in fake.runs] == ["add"]  # forked at rand, never replayed it
    assert after.tainted


def test_branch_point_gets_snapshot_when_replay_costs_more() -> None:
    e = engine(CostAwarePolicy(replay_factor=1e9, branch_factor=0.5))
    with e.session("t") as a:
        a.call("add", k="x", v=1)
        mid = a.call("add", k="x", v=2)
        a.call("get", k="y")
    with e.session("t") as b:
        b.call("add", k="x", v=1)
        b.call("add", k="x", v=2)
        b.call("get", k="x")  # second child of mid: mid becomes a branch point
    node = e.graph.get(mid.node_id)
    assert node is not None and node.snapshot is not None
    assert e.stats()["snapshot_reasons"] == {"branch": 1}


def test_budget_evicts_snapshots_never_nodes() -> None:
    e = engine(AlwaysSnapshot(), budget=250)
    with e.session("t") as a:
        for v in range(6):
            a.call("add", k=f"k{v}", v=v)
    assert e.graph.snapshot_bytes() <= 250
    assert e.stats()["evictions"] > 0
    assert len(e.graph) == 7 and all(n.observation for n in e.graph.nodes() if n.parent)
    assert set(backend_of(e).snapshots) == {
        n.snapshot.snapshot_id for n in e.graph.snapshotted() if n.snapshot
    }
    with e.session("t") as b:
        for v in range(6):
            assert b.call("add", k=f"k{v}", v=v).hit
        assert b.call("get", k="k5").output == "k5=5"


def test_locked_snapshot_is_not_evicted() -> None:
    e = engine(AlwaysSnapshot(), budget=10**9)
    with e.session("t") as a:
        first = a.call("add", k="a", v=1)
        a.call("add", k="b", v=1)
    node = e.graph.get(first.node_id)
    assert node is not None
    e.graph.lock(node)
    object.__setattr__(e.settings, "snapshot_budget_bytes", 0)
    e.enforce_budget()
    assert node.snapshot is not None
    assert e.stats()["over_budget"] == 1
    e.graph.unlock(node)
    e.enforce_budget()
    assert node.snapshot is None


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("nope", {"k": "x"}, "unknown tool 'nope'"),
        ("get", {}, "needs argument(s) k"),
        ("get", {"k": float("nan")}, "not JSON-serialisable"),
        ("get", {"k": object()}, "not JSON-serialisable"),
    ],
)
def test_bad_calls_raise_clear_errors_and_store_nothing(
    tool: str, args: dict[str, object], message: str
) -> None:
    e = engine()
    with e.session("t") as s:
        with pytest.raises(ToolCallError) as info:
            s.call(tool, **args)
        assert message in str(info.value)
        assert len(e.graph) == 1 and not backend_of(e).runs


def test_closed_session_refuses_calls() -> None:
    e = engine()
    s = e.session("t")
    s.close()
    s.close()
    with pytest.raises(Exception, match="closed"):
        s.call("get", k="x")


def test_fresh_output_reference_matches_engine_on_long_history() -> None:
    e = engine(CostAwarePolicy())
    history: list[ToolCall] = []
    with e.session("t") as s:
        for i in range(30):
            call = ToolCall("add", {"k": "x", "v": i % 4})
            history.append(call)
            assert s.call("add", k="x", v=i % 4).output == fresh_output(history)


def test_refused_snapshot_is_skipped_and_counted() -> None:
    from snapshots import SnapshotRefusedError

    e = engine(AlwaysSnapshot())
    original = FakeSandbox.snapshot

    def refuse_with_proc(self: FakeSandbox, snapshot_id: str) -> object:
        if "proc" in self.state:
            raise SnapshotRefusedError("a process runs", "replay instead")
        return original(self, snapshot_id)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeSandbox, "snapshot", refuse_with_proc)
        with e.session("t") as a:
            first = a.call("set", k="x", v=1)
            started = a.call("set", k="proc", v=1)
    assert e.graph.get(first.node_id).snapshot is not None  # type: ignore[union-attr]
    assert e.graph.get(started.node_id).snapshot is None  # type: ignore[union-attr]
    assert e.stats()["snapshots_refused"] == 1


def test_failed_fork_drops_that_snapshot_and_forks_an_earlier_one() -> None:
    from snapshots import SnapshotError

    e = engine(AlwaysSnapshot())
    with e.session("t") as a:
        first = a.call("add", k="x", v=1)
        second = a.call("add", k="x", v=2)
    broken = e.graph.get(second.node_id)
    assert broken is not None and broken.snapshot is not None
    original = FakeBackend.fork

    def fail_on_broken(self: FakeBackend, handle: object) -> FakeSandbox:
        if handle is broken.snapshot:  # type: ignore[union-attr]
            raise SnapshotError("restore cannot prove itself")
        return original(self, handle)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeBackend, "fork", fail_on_broken)
        with e.session("t") as b:
            b.call("add", k="x", v=1)
            b.call("add", k="x", v=2)
            assert b.call("get", k="x").output == "x=3"
    assert broken.snapshot is None and e.stats()["fork_failures"] == 1
    assert e.graph.get(first.node_id).snapshot is not None  # type: ignore[union-attr]


def test_an_observation_the_sandbox_flags_makes_its_node_nondeterministic() -> None:
    e = engine(CostAwarePolicy(replay_factor=1e9, branch_factor=1e9))
    with e.session("t") as a:
        flagged = a.call("bg", k="x")  # e.g. a background process holds the output open
        assert not flagged.hit and flagged.tainted
        a.call("get", k="x")
    node = e.graph.get(flagged.node_id)
    assert node is not None and node.nondeterministic and node.snapshot is not None
    with e.session("t") as b:
        served = [b.call("bg", k="x"), b.call("get", k="x")]
    assert [r.hit for r in served] == [True, True]
    assert [r.tainted for r in served] == [True, True]  # never a plain hit


def test_a_replay_the_sandbox_flags_marks_the_step_without_counting_a_divergence() -> None:
    settings = Settings(verify_replays=False)
    e = Engine(FakeBackend(), None, settings=settings, policy=NeverSnapshot())
    with e.session("t") as a:
        first = a.call("bg", k="x")
        a.call("get", k="x")
    node = e.graph.get(first.node_id)
    assert node is not None
    node.nondeterministic = False  # recorded before sandboxes flagged such calls
    with e.session("t") as b:
        assert not b.call("bg", k="x").tainted
        b.call("get", k="y")  # a miss: forks the root and replays bg, which the sandbox flags
    assert node.nondeterministic and e.stats()["divergences"] == 0


def test_close_closes_the_store_open_engine_opened(tmp_path: Path) -> None:
    opened = open_engine(Settings(home=tmp_path / "home"))
    assert opened.store is not None and not opened.store.closed
    opened.close()
    assert opened.store.closed


def test_close_leaves_a_store_passed_in_open(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 'cache.db'}") as store:
        e = Engine(FakeBackend(), store)  # type: ignore[arg-type]
        with e.session("t") as s:
            s.call("set", k="a", v=1)
        e.close()
        assert not store.closed
        assert store.node_count() == 2  # still usable by its owner: root and one call


def test_stats_are_typed_and_serialise_as_before() -> None:
    e = engine()
    with e.session("t") as s:
        s.call("set", k="a", v=1)
        s.call("get", k="a")
    with e.session("t") as s:
        s.call("set", k="a", v=1)
    stats = e.stats()
    assert (stats.calls, stats.hits, stats.misses, stats.hit_rate) == (3, 1, 2, 1 / 3)
    assert stats.executed_calls == 2 and stats.tool_seconds == stats.executed_seconds
    wire = json.loads(json.dumps(stats.to_dict()))
    assert wire["hits"] == 1 and wire["snapshot_reasons"] == stats.snapshot_reasons
    assert set(wire) == {
        "hit_rate",
        "nodes",
        "snapshot_bytes",
        *(f.name for f in fields(Counters)),
    } | {
        "fork_seconds_estimate",
        "snapshot_seconds_estimate",
    }
    assert stats["hits"] == 1  # read by name, as the dict was
    with pytest.raises(KeyError):
        stats["no_such_counter"]


class OfferingPool:
    """A pool that offers a fresh sandbox at whatever node a miss needs (a unit-test stand-in
    for ``PreforkPool``), counting what the engine asks of it."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend, self.takes, self.misses = backend, 0, 0

    def take(self, target: object, *, max_replay_seconds: float) -> tuple[FakeSandbox, object]:
        self.takes += 1
        state: dict[str, int] = {}
        for step in target.path():  # type: ignore[attr-defined]
            FakeSandbox(self.backend, state, "replayer").run(step.call)
        return FakeSandbox(self.backend, state, f"pooled{self.takes}"), target

    def note_miss(self, node: object) -> None:
        self.misses += 1

    def note_session(self, root: object) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_bound_sandbox_at_the_position_serves_the_miss_without_a_pool_swap() -> None:
    e = engine(NeverSnapshot())
    pool = OfferingPool(backend_of(e))
    e.pool = pool  # type: ignore[assignment]
    with e.session("t") as s:
        assert s.call("add", k="a", v=1).output == "a=1"  # no sandbox yet: the pool's
        assert s.call("add", k="a", v=2).output == "a=3"  # its sandbox is at the position
        assert s.call("add", k="a", v=4).output == "a=7"
        assert pool.takes == 1 and backend_of(e).closed == 0  # nothing handed over, none closed
    assert pool.misses == 3 and e.stats().pool_takes == 1
    e.close()
