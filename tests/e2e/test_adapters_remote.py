"""The adapters on a remote session (`tvcache serve`): parallel calls keep the message's order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvcache.adapters import atool_messages
from tvcache.adapters.rllm import TvcacheToolEnv
from tvcache.client import AsyncClient, Client
from tvcache.service import ServerProcess

COMMANDS = ["sleep 0.3; echo a >> log", "echo b >> log", "cat log", "wc -l < log"]
EXPECTED = ["", "", "a\nb\n", "2\n"]
TURN = {
    "role": "assistant",
    "tool_calls": [
        {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "bash", "arguments": {"command": c}},
        }
        for i, c in enumerate(COMMANDS)
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("remote-home"), "--log-level", "warning") as s:
        yield s


@pytest.fixture
def template(tmp_path: Path) -> str:
    (tmp_path / "task").mkdir()
    return str(tmp_path / "task")


def test_openai_parallel_calls_on_both_remote_sessions(
    server: ServerProcess, template: str
) -> None:
    async def main() -> list[list[str]]:
        outs = []
        with Client(server.url) as client:  # the threaded client's acall
            for _ in range(2):
                with client.session("order", template=template) as session:
                    outs.append([r["content"] for r in await atool_messages(session, TURN)])
        async with AsyncClient(server.url) as aclient:
            for _ in range(2):
                async with await aclient.session("order", template=template) as session:
                    outs.append([r["content"] for r in await atool_messages(session, TURN)])
        return outs

    assert asyncio.run(main()) == [EXPECTED] * 4


def test_rllm_from_dict_builds_a_remote_env(server: ServerProcess, template: str) -> None:
    env = TvcacheToolEnv.from_dict(
        {"question": "?", "max_steps": 3,
         "tvcache": {"url": server.url, "task_id": "order", "template": template}}
    )  # fmt: skip
    assert env.reset() == ({"question": "?"}, {})
    obs, _, done, _ = env.step(TURN["tool_calls"])  # type: ignore[index]
    assert list(obs["tool_outputs"].values()) == EXPECTED and not done
    env.close()
