"""verl's real tool loading and lifecycle, against a running `tvcache serve`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from adapters_support import framework

from snapshots import TvcacheError
from tvcache.client import Client
from tvcache.service import ServerProcess

EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "verl_tool_config.yaml"


@pytest.fixture(scope="module")
def registry() -> Any:
    return framework("verl.tools.tool_registry", "verl")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("verl-home")
    with ServerProcess(home, "--log-level", "warning") as process:
        yield process


@pytest.fixture
def template(tmp_path: Path) -> str:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "notes.txt").write_text("one\n")
    return str(tmp_path / "task")


def load(registry: Any, tmp_path: Path, url: str, template: str, idle: float = 600.0) -> Any:
    """The example YAML, pointed at this server and task, loaded the way verl loads it."""
    text = EXAMPLE_CONFIG.read_text().replace("http://127.0.0.1:8765", url)
    text = text.replace("task_id: notes", f"task_id: notes\n      template: {template}")
    text = text.replace("idle_seconds: 600", f"idle_seconds: {idle}")
    (tmp_path / "tools.yaml").write_text(text)
    [tool] = registry.initialize_tools_from_config(str(tmp_path / "tools.yaml"))
    return tool


async def call(tool: Any, request_id: str, command: str) -> tuple[str, dict[str, Any]]:
    """One tool call as verl's ToolAgentLoop makes it: create, execute, release."""
    agent_data = SimpleNamespace(request_id=request_id)
    instance_id, _ = await tool.create(create_kwargs={})
    try:
        response, _reward, metrics = await tool.execute(
            instance_id, {"command": command}, agent_data=agent_data
        )
    finally:
        await tool.release(instance_id)
    return response.text, metrics


def test_rollouts_share_the_cache_and_keep_their_history(
    registry: Any, tmp_path: Path, server: ServerProcess, template: str
) -> None:
    async def main() -> list[list[tuple[str, dict[str, Any]]]]:
        tool = load(registry, tmp_path, server.url, template)
        commands = ["echo two >> notes.txt", "cat notes.txt"]
        seen = [[await call(tool, request, c) for c in commands] for request in ("r1", "r2")]
        seen.append([await call(tool, "r3", "cat notes.txt")])
        await tool.close_all()
        await tool.client.aclose()
        return seen

    first, second, fresh = asyncio.run(main())
    assert [text for text, _ in first] == ["", "one\ntwo\n"] == [text for text, _ in second]
    assert [m["hit"] for _, m in first] == [False, False]
    assert [m["hit"] for _, m in second] == [True, True]
    assert fresh[0][0] == "one\n"  # another rollout: not the first one's history


def test_parallel_tool_calls_run_in_the_order_of_the_message(
    registry: Any, tmp_path: Path, server: ServerProcess, template: str
) -> None:
    """verl gathers a turn's tool calls; the slow first one still runs first."""
    turn = ["sleep 0.3; echo a >> log", "echo b >> log", "cat log", "wc -l < log"]

    async def main() -> list[list[str]]:
        tool = load(registry, tmp_path, server.url, template)
        outs = []
        for request in ("p1", "p2", "p3"):
            replies = await asyncio.gather(*(call(tool, request, c) for c in turn))
            outs.append([text for text, _ in replies])
        await tool.close_all()
        await tool.client.aclose()
        return outs

    for texts in asyncio.run(main()):
        assert texts == ["", "", "a\nb\n", "2\n"]


def test_sessions_verl_never_releases_are_closed_when_idle(
    registry: Any, tmp_path: Path, server: ServerProcess, template: str
) -> None:
    def open_sessions() -> int:
        with Client(server.url) as client:
            return int(client.stats()["sessions_open"])

    async def main() -> tuple[int, int, int]:
        tool = load(registry, tmp_path, server.url, template, idle=0.2)
        before = open_sessions()
        await call(tool, "old", "ls")
        during = open_sessions()
        await asyncio.sleep(0.3)
        await call(tool, "new", "ls")  # the old rollout has been idle too long: closed
        after = open_sessions()
        await tool.close_all()
        await tool.client.aclose()
        return during - before, after - before, open_sessions() - before

    assert asyncio.run(main()) == (1, 1, 0)


def test_a_session_that_failed_to_open_is_opened_again_by_the_next_call(
    registry: Any, tmp_path: Path, server: ServerProcess
) -> None:
    later = tmp_path / "later"

    async def main() -> str:
        tool = load(registry, tmp_path, server.url, str(later))
        with pytest.raises(TvcacheError, match="does not exist"):
            await call(tool, "r", "ls")
        later.mkdir()
        (later / "ready").write_text("")
        text, _ = await call(tool, "r", "ls")
        await tool.close_all()
        await tool.client.aclose()
        return text

    assert asyncio.run(main()) == "ready\n"
