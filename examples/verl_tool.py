"""verl's tool interface served by tvcache: the YAML entry in verl_tool_config.yaml, loaded
the way verl loads it, answering two rollouts' tool calls through a `tvcache serve`.

Run: python examples/verl_tool.py      (needs: pip install 'tvcache[verl]')

It starts a server on a free port in a temporary home, then does what verl's ToolAgentLoop
does for each tool call (create, execute, release; a turn's calls under asyncio.gather).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from types import SimpleNamespace

from verl.tools.tool_registry import initialize_tools_from_config

from tvcache.adapters.verl import TvcacheTool
from tvcache.service import ServerProcess

CONFIG = Path(__file__).with_name("verl_tool_config.yaml")


async def call(tool: TvcacheTool, request_id: str, command: str) -> str:
    instance_id, _ = await tool.create(create_kwargs={})
    try:
        response, _reward, metrics = await tool.execute(
            instance_id, {"command": command}, agent_data=SimpleNamespace(request_id=request_id)
        )
    finally:
        await tool.release(instance_id)
    return f"{'hit ' if metrics.get('hit') else 'miss'} {command!r:32} -> {response.text!r}"


async def rollouts(tool: TvcacheTool) -> None:
    for request_id in ("rollout-0", "rollout-1"):
        print(await call(tool, request_id, "ls"))
        turn = ["sleep 0.2; echo first >> log.txt", "echo second >> log.txt", "cat log.txt"]
        for line in await asyncio.gather(*(call(tool, request_id, c) for c in turn)):
            print(line)
    await tool.close_all()
    await tool.client.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        template = Path(tmp) / "task"
        template.mkdir()
        (template / "notes.txt").write_text("one\n")
        with ServerProcess(Path(tmp) / "home", "--log-level", "warning") as server:
            text = CONFIG.read_text().replace("http://127.0.0.1:8765", server.url)
            text = text.replace("task_id: notes", f"task_id: notes\n      template: {template}")
            (Path(tmp) / "tools.yaml").write_text(text)
            [tool] = initialize_tools_from_config(str(Path(tmp) / "tools.yaml"))
            asyncio.run(rollouts(tool))


if __name__ == "__main__":
    main()
