"""The agent-loop adapters on an in-process engine with the local backend (a temp dir)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvcache import Engine, Settings, open_engine
from tvcache.adapters import ToolEnv, tool_messages
from tvcache.client import CachedExecutor


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(Settings(home=tmp_path / "home"), persist=False)
    yield engine
    engine.close()


@pytest.fixture
def template(tmp_path: Path) -> str:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "notes.txt").write_text("one\n")
    return str(tmp_path / "task")


def bash(command: str) -> dict[str, object]:
    return {"tool": "bash", "args": {"command": command}}


def test_gym_style_env_steps_hit_and_truncate(engine: Engine, template: str) -> None:
    env = ToolEnv(
        engine,
        "notes",
        template=template,
        max_steps=2,
        reward=lambda _a, obs: float("two" in obs),
        done=lambda action, _obs: "submit" in str(action["args"]),
    )
    for rollout in range(2):
        obs, info = env.reset()
        assert obs == "" and info["task_id"] == "notes"
        obs, reward, terminated, truncated, info = env.step(
            bash("echo two >> notes.txt; cat notes.txt")
        )
        assert obs == "one\ntwo\n" and reward == 1.0 and info["hit"] == (rollout == 1)
        assert not terminated and not truncated
        obs, _, _, truncated, info = env.step({"tool": "bash", "args": {}})
        assert obs.startswith("error: ") and "command" in info["error"] and truncated
    env.reset()
    _, _, terminated, truncated, _ = env.step(bash("echo submit"))
    assert terminated and not truncated
    env.close()


def test_openai_tool_calls_become_tool_messages(engine: Engine, template: str) -> None:
    message = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "bash", "arguments": json.dumps({"command": "cat notes.txt"})}},
            {"id": "c2", "type": "function",
             "function": {"name": "bash", "arguments": json.dumps({"command": "exit 3"})}},
            {"id": "c3", "type": "function", "function": {"name": "bash", "arguments": "{oops"}},
        ],
    }  # fmt: skip
    with engine.session("notes", template=template) as session:
        replies = tool_messages(session, message)
    assert [r["tool_call_id"] for r in replies] == ["c1", "c2", "c3"]
    assert {r["role"] for r in replies} == {"tool"}
    assert replies[0]["content"] == "one\n"
    assert replies[1]["content"] == "\n[exit code 3]"
    assert replies[2]["content"].startswith("error: arguments of 'bash' are not valid JSON")


def test_cached_executor_is_a_drop_in_execute(engine: Engine, template: str) -> None:
    for rollout in range(2):
        with CachedExecutor(engine.session("notes", template=template)) as sandbox:
            out = sandbox.execute("cat notes.txt; false")
            assert out == "one\n" and isinstance(out, str)
            assert out.exit_code == 1 and out.hit == (rollout == 1)
