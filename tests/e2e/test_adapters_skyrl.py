"""SkyRL-gym's real SQL environment, unwrapped and through tvcache: byte-identical over a group."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from adapters_support import framework
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapshots import TvcacheError
from tvcache import Engine, Settings
from tvcache.adapters.skyrl import CachedTextEnv, skyrl_engine
from tvcache.data import spider_database

DB = "concert_singer"
GOLD = "SELECT count(*) FROM singer"
ACTIONS = [
    "<sql>SELECT count(*) FROM singer</sql>",
    "<sql>SELECT Name, Country FROM singer ORDER BY Age</sql>",
    "<sql>SELECT * FROM no_such_table</sql>",
    "I will think about it first.",  # no <sql>: the env's own invalid-format text
    "<sql>SELECT Stadium_ID, Name FROM stadium</sql>",
]
THINK = "<think>Next.</think>\n"  # the SQL env rewards only answers whose turns all think
ACTIONS = [THINK + action for action in ACTIONS]
SOLUTIONS = [THINK + f"<solution>{sql}</solution>" for sql in (GOLD, "SELECT 1")]


@pytest.fixture(scope="module")
def sql_env() -> Any:
    return framework("skyrl_gym.envs.sql.env", "skyrl").SQLEnv


@pytest.fixture
def data(tmp_path: Path) -> Path:
    spider_database(DB, tmp_path / "data" / "spider" / "database" / DB)
    return tmp_path / "data"


def make(sql_env: Any, data: Path, max_turns: int = 5) -> Any:
    """The env as skyrl-gym's trainer makes it: a DictConfig and the dataset row's extras."""
    from omegaconf import DictConfig

    extras = {"db_id": DB, "reward_spec": {"ground_truth": GOLD}, "data": "spider"}
    return sql_env(DictConfig({"db_path": str(data)}), extras | {"max_turns": max_turns})


@pytest.fixture
def engine(tmp_path: Path, sql_env: Any, data: Path) -> Iterator[Engine]:
    engine = skyrl_engine(make(sql_env, data), Settings(home=tmp_path / "home"), persist=False)
    yield engine
    engine.close()


def rollout(env: Any, actions: list[str]) -> list[Any]:
    """Everything the model and the trainer see: the first prompt, then each step's output."""
    seen: list[Any] = [env.init([{"role": "user", "content": "count the singers"}])]
    for action in actions:
        out = env.step(action)
        seen.append(dict(out))
        if out["done"]:
            break
    env.close()
    return seen


def group(seed: int, size: int = 8) -> list[list[str]]:
    """A GRPO group: rollouts share a prefix, then diverge, then submit."""
    rng = random.Random(seed)
    plans = []
    for _ in range(size):
        depth = rng.randint(1, 4)
        plan = [ACTIONS[0]] + [rng.choice(ACTIONS) for _ in range(depth - 1)]
        plans.append([*plan, rng.choice(SOLUTIONS)])
    return plans


def test_a_grpo_group_is_byte_identical_to_the_unwrapped_env(
    sql_env: Any, data: Path, engine: Engine
) -> None:
    for seed in range(3):
        for plan in group(seed):
            plain = rollout(make(sql_env, data), plan)
            cached = rollout(CachedTextEnv(make(sql_env, data), engine, "spider-0"), plan)
            assert cached == plain
    stats = engine.stats()
    assert stats["hits"] > stats["misses"] > 0
    assert {r[-1]["reward"] for p in group(0) for r in [rollout(make(sql_env, data), p)]} == {0, 1}


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    plans=st.lists(
        st.tuples(st.integers(2, 5), st.lists(st.sampled_from(ACTIONS + SOLUTIONS), max_size=5)),
        min_size=1,
        max_size=4,
    )
)
def test_any_rollouts_at_any_turn_budget_see_what_the_env_shows(
    sql_env: Any, data: Path, engine: Engine, plans: list[tuple[int, list[str]]]
) -> None:
    """The guarantee through the wrapper: whatever the cache already holds (the engine is
    shared by all examples), every observation and reward equals the unwrapped env's."""
    for max_turns, plan in plans:
        plain = rollout(make(sql_env, data, max_turns), plan)
        cached = rollout(CachedTextEnv(make(sql_env, data, max_turns), engine, "spider-0"), plan)
        assert cached == plain


def test_turn_counters_stay_out_of_the_key(sql_env: Any, data: Path, engine: Engine) -> None:
    """The same query at another turn count is a hit, with that turn count's reminder."""
    first = CachedTextEnv(make(sql_env, data, max_turns=5), engine, "spider-0")
    first.init([])
    five = first.step(ACTIONS[1])["observations"][0]["content"]
    later = CachedTextEnv(make(sql_env, data, max_turns=3), engine, "spider-0")
    later.init([])
    three = later.step(ACTIONS[1])["observations"][0]["content"]
    assert engine.stats()["hits"] == 1
    assert "You have 4 turns left" in five and "You have 2 turns left" in three
    plain = make(sql_env, data, max_turns=3)
    assert three == plain.step(ACTIONS[1])["observations"][0]["content"]
    first.close()
    later.close()


def test_a_cache_outage_raises_instead_of_becoming_an_observation(
    sql_env: Any, data: Path, engine: Engine
) -> None:
    env = CachedTextEnv(make(sql_env, data), engine, "spider-0")
    env.init([])
    env.step(ACTIONS[0])
    assert env.session is not None
    env.session.close()  # what a lost service looks like from here: the session refuses
    with pytest.raises(TvcacheError, match="closed"):
        env.step(ACTIONS[1])
    env.close()


def test_a_group_stepped_from_threads_is_byte_identical(
    sql_env: Any, data: Path, engine: Engine
) -> None:
    """SkyRL's generator steps a group's envs concurrently; each keeps its own history."""
    plans = group(7)
    plain = [rollout(make(sql_env, data), plan) for plan in plans]
    with ThreadPoolExecutor(8) as pool:
        cached = list(
            pool.map(
                lambda plan: rollout(CachedTextEnv(make(sql_env, data), engine, "spider-0"), plan),
                plans,
            )
        )
    assert cached == plain
