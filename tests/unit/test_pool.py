"""The pre-forked sandbox pool on the fake environment: where it forks, what it hands over."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from fake_env import FakeBackend, fresh_output

from sandbox import ToolCall
from tvcache._engine import Engine
from tvcache._policy import NeverSnapshot
from tvcache.pool import PreforkPool


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pooled(**options: object) -> tuple[Engine, PreforkPool, FakeBackend]:
    fake = FakeBackend()
    engine = Engine(fake, None, policy=NeverSnapshot())
    pool = PreforkPool(engine, **options)  # type: ignore[arg-type]
    engine.pool = pool
    return engine, pool, fake


def test_new_session_gets_a_sandbox_at_its_root_in_the_background() -> None:
    engine, pool, fake = pooled()
    with engine.session("t") as s:
        assert pool.settle()
        assert pool.stats()["ready"] == 1 and fake.starts == 1
        assert s.call("add", k="x", v=1).output == "x=1"
    assert engine.stats()["pool_takes"] == 1 and fake.starts == 1
    engine.close()


def test_hot_node_is_prefilled_and_the_next_miss_there_takes_it() -> None:
    engine, pool, fake = pooled(hot_misses=2)
    prefix = [("add", 1), ("add", 2)]
    for tail in range(3):
        with engine.session("t") as s:
            for _, v in prefix:
                s.call("add", k="x", v=v)
            assert pool.settle()
            got = s.call("set", k="y", v=tail)  # miss below the shared prefix
            assert not got.hit and got.output == "ok"
            assert s.call("get", k="x").output == "x=3"
    stats = engine.stats()
    # first session: the root sandbox; third: the one prefilled at the hot node x=3
    assert stats["pool_takes"] >= 2 and pool.stats()["hot_nodes"] >= 1
    engine.close()
    assert fake.closed == fake.starts + fake.forks  # nothing left alive


def test_take_respects_the_replay_bound_and_ancestry() -> None:
    engine, pool, _ = pooled()
    with engine.session("t") as s:
        s.call("add", k="x", v=1)
        s.call("add", k="x", v=2)
        assert pool.settle()
    root = engine.graph.root(s.root_id)
    assert root is not None
    deep = s.position
    assert pool.take(deep, max_replay_seconds=1.5) is None  # two calls of 1 s from the root
    taken = pool.take(deep, max_replay_seconds=2.0)
    assert taken is not None and taken[1] is root
    taken[0].close()
    engine.close()


def test_size_limit_and_idle_shrink() -> None:
    clock = FakeClock()
    engine, pool, fake = pooled(max_size=2, idle_seconds=10.0, clock=clock)
    sessions = [engine.session(f"task-{i}") for i in range(5)]
    assert pool.settle()
    assert pool.stats()["ready"] == 2
    clock.now = 5.0
    assert pool.shrink() == 0
    clock.now = 10.0
    assert pool.shrink() == 2 and pool.stats()["ready"] == 0
    assert fake.closed == 2
    for s in sessions:
        s.close()
    engine.close()


def test_concurrent_sessions_with_a_pool_see_fresh_outputs() -> None:
    engine, _, fake = pooled(hot_misses=1, per_node=2, max_size=6)
    rng = random.Random(7)
    plans = [
        [ToolCall("add", {"k": "x", "v": rng.choice([1, 2])}) for _ in range(4)] for _ in range(24)
    ]

    def rollout(plan: list[ToolCall]) -> list[tuple[str, str]]:
        with engine.session("t") as s:
            return [
                (s.call(c.tool, **c.args).output, fresh_output(plan[: i + 1]))
                for i, c in enumerate(plan)
            ]

    with ThreadPoolExecutor(8) as workers:
        for pairs in workers.map(rollout, plans):
            assert all(got == want for got, want in pairs)
    engine.close()
    assert fake.closed == fake.starts + fake.forks
