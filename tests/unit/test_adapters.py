"""The agent-loop adapters on an in-process engine with the local backend (a temp dir)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tvcache import Engine, Settings, open_engine
from tvcache.adapters import ToolEnv, atool_messages, tool_messages
from tvcache.adapters.rllm import TvcacheToolEnv
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


def test_openai_arguments_may_be_a_dict_and_are_keyed_like_json_text(
    engine: Engine, template: str
) -> None:
    as_text = {"name": "bash", "arguments": json.dumps({"command": "cat notes.txt"})}
    as_dict = {"name": "bash", "arguments": {"command": "cat notes.txt"}}
    for function in (as_text, as_dict):
        with engine.session("notes", template=template) as session:
            [reply] = tool_messages(session, {"tool_calls": [{"id": "c", "function": function}]})
        assert reply["content"] == "one\n"
    assert engine.stats()["hits"] == 1


def test_openai_unknown_arguments_and_missing_names_are_refused_before_the_cache(
    engine: Engine, template: str
) -> None:
    schema = {"type": "function", "function": {"name": "bash", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}}}}  # fmt: skip
    calls = [
        {"id": "a", "function": {"name": "bash", "arguments": {"command": "ls", "cwd": "/"}}},
        {"id": "b", "function": {"arguments": "{}"}},
        {"id": "c"},
        {"id": "d", "function": {"name": "bash", "arguments": "[1, 2]"}},
        {"id": "e", "function": {"name": "bash", "arguments": {"command": "ls", "timeout": 5}}},
    ]
    with engine.session("notes", template=template) as session:
        replies = tool_messages(session, {"tool_calls": calls})
        strict = tool_messages(session, {"tool_calls": calls[4:]}, tools=[schema])
    contents = [reply["content"] for reply in replies]
    assert contents[0].startswith("error: tool 'bash' has no argument(s) 'cwd'")
    assert "command, timeout" in contents[0]
    assert "'b' has no function name" in contents[1] and "'c' has no function name" in contents[2]
    assert contents[3].startswith("error: arguments of 'bash' must be a JSON object")
    assert contents[4] == "notes.txt\n"
    assert strict[0]["content"].startswith("error: tool 'bash' has no argument(s) 'timeout'")
    assert engine.stats()["calls"] == 1  # only the well-formed call reached the cache


def parallel_turn() -> dict[str, object]:
    """One assistant turn of calls whose results show the order they ran in."""
    commands = ["sleep 0.2; echo a >> log", "echo b >> log", "cat log", "wc -l < log"]
    calls = [
        {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "bash", "arguments": {"command": c}},
        }
        for i, c in enumerate(commands)
    ]
    return {"role": "assistant", "tool_calls": calls}


def test_openai_parallel_calls_run_in_the_order_of_the_message(
    engine: Engine, template: str
) -> None:
    for _ in range(3):
        with engine.session("notes", template=template) as session:
            replies = asyncio.run(atool_messages(session, parallel_turn()))
        assert [r["content"] for r in replies] == ["", "", "a\nb\n", "2\n"]
        assert [r["tool_call_id"] for r in replies] == ["c0", "c1", "c2", "c3"]


def test_rllm_env_follows_the_documented_interface(engine: Engine, template: str) -> None:
    def reward_fn(task_info: dict[str, object], action: str) -> float:
        return float(action == task_info["answer"])

    env = TvcacheToolEnv(
        engine, "notes", task={"answer": "a\nb\n"}, template=template, reward_fn=reward_fn
    )
    env.idx = 3
    assert env.idx == 3 and TvcacheToolEnv.is_multithread_safe()
    for _ in range(2):
        task, info = env.reset()
        assert task == {"answer": "a\nb\n"} and info == {}
        obs, reward, done, info = env.step(parallel_turn()["tool_calls"])
        assert obs == {"tool_outputs": {"c0": "", "c1": "", "c2": "a\nb\n", "c3": "2\n"}}
        assert (reward, done) == (0.0, False) and info["metadata"] == {}
        obs, reward, done, _ = env.step(
            {"id": "f", "function": {"name": "finish", "arguments": '{"response": "a\\nb\\n"}'}}
        )
        assert (obs, reward, done) == ({}, 1.0, True)
    assert engine.stats()["hits"] == 4
    env.close()
    with pytest.raises(ValueError, match="needs url and task_id"):
        TvcacheToolEnv.from_dict({"question": "?", "tvcache": {"task_id": "notes"}})


def test_rllm_envs_stepped_from_threads_keep_their_own_order(engine: Engine, template: str) -> None:
    """rLLM's engine steps many envs at once in threads (is_multithread_safe)."""

    def rollout(_: int) -> dict[str, str]:
        env = TvcacheToolEnv(engine, "notes", template=template)
        env.reset()
        obs, _reward, _done, _info = env.step(parallel_turn()["tool_calls"])
        env.close()
        return dict(obs["tool_outputs"])

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(rollout, range(8)))
    assert all(o == {"c0": "", "c1": "", "c2": "a\nb\n", "c3": "2\n"} for o in outputs)
