"""ToolEnv against the real gymnasium: its checker, gym.make, vector envs, episode rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adapters_support import framework

from tvcache import Engine, Settings, open_engine
from tvcache.adapters.gym import ENV_ID, INFO_KEYS, ToolEnv, register


@pytest.fixture(scope="module")
def gym() -> Any:
    return framework("gymnasium", "gymnasium")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(Settings(home=tmp_path / "home"), persist=False)
    yield engine
    engine.close()


@pytest.fixture
def template(tmp_path: Path) -> str:
    for name, text in (("task", "one\n"), ("other", "other\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text(text)
    return str(tmp_path / "task")


CAT = json.dumps({"tool": "bash", "args": {"command": "cat notes.txt"}})


def test_passes_gymnasiums_env_checker_directly_and_through_make(
    gym: Any, engine: Engine, template: str
) -> None:
    from gymnasium.utils.env_checker import check_env

    env = ToolEnv(engine, "notes", template=template)
    assert isinstance(env, gym.Env)
    check_env(env, skip_render_check=True)
    register()
    made = gym.make(ENV_ID, source=lambda: engine, task_id="notes", template=template)
    check_env(made.unwrapped, skip_render_check=True)
    made.reset(seed=1)
    observation, *_ = made.step(CAT)
    assert observation == "one\n" and made.observation_space.contains(observation)
    made.close()


def test_a_vector_env_steps_rollouts_side_by_side(gym: Any, engine: Engine, template: str) -> None:
    vector = gym.vector.SyncVectorEnv(
        [lambda: ToolEnv(engine, "notes", template=template) for _ in range(3)]
    )
    vector.reset(seed=0)
    observations, rewards, _terminated, _truncated, info = vector.step([CAT] * 3)
    assert list(observations) == ["one\n"] * 3 and list(rewards) == [0.0] * 3
    assert sorted(info["hit"]) == [False, True, True]
    vector.close()


def test_reset_options_step_after_the_end_and_info_keys(engine: Engine, template: str) -> None:
    env = ToolEnv(engine, "notes", template=template, max_steps=2)
    env.reset(options={"task_id": "other", "template": template.replace("task", "other")})
    observation, _, _, _, ok = env.step(CAT)
    assert observation == "other\n"
    _, _, terminated, truncated, bad = env.step("not json")
    assert set(ok) == set(bad) == set(INFO_KEYS) and ok["error"] is None
    assert bad["error"].startswith("error: an action must be a JSON object")
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="has ended"):
        env.step(CAT)
    observation, info = env.reset()
    assert info == {"task_id": "notes"} and env.step(CAT)[0] == "one\n"
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"seed": 3})
    env.close()
