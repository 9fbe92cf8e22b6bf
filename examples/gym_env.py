"""A Gymnasium-style environment whose actions are tool calls, served through tvcache.

Run: python examples/gym_env.py            (an in-process engine in a temporary home)
     python examples/gym_env.py URL        (a running `tvcache serve` at URL)

Two rollouts of the same task: the second one's shared prefix is served from the cache.
With gymnasium installed, ToolEnv is a gymnasium.Env: after tvcache.adapters.gym.register(),
gym.make("tvcache/ToolEnv-v0", source=URL, task_id=...) makes one (see docs/adapters.md).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tvcache import Settings, open_engine
from tvcache.adapters import SessionSource, ToolEnv
from tvcache.client import Client


def bash(command: str) -> dict[str, object]:
    return {"tool": "bash", "args": {"command": command}}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        template = Path(tmp) / "task"
        template.mkdir()
        (template / "numbers.txt").write_text("3\n1\n2\n")
        source: SessionSource
        if len(sys.argv) > 1:
            source = Client(sys.argv[1])  # the server must see the same template path
        else:
            source = open_engine(Settings(home=Path(tmp) / "home"), persist=False)
        env = ToolEnv(
            source,
            "sort-numbers",
            template=str(template),
            max_steps=4,
            reward=lambda _action, obs: float(obs == "1\n2\n3\n"),
            done=lambda action, _obs: "sort" in str(action["args"]),
        )
        plans = [
            ["cat numbers.txt", "wc -l numbers.txt", "sort numbers.txt"],
            ["cat numbers.txt", "wc -l numbers.txt", "sort -r numbers.txt"],
        ]
        for rollout, plan in enumerate(plans):
            observation, info = env.reset()
            for command in plan:
                observation, reward, terminated, truncated, info = env.step(bash(command))
                served = "hit " if info.get("hit") else "miss"
                print(f"rollout {rollout} {served} {command!r:24} -> {observation!r} r={reward}")
                if terminated or truncated:
                    break
        env.close()


if __name__ == "__main__":
    main()
