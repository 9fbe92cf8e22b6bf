"""An rLLM-style tool environment served by tvcache (rLLM's BaseEnv interface).

Run: python examples/rllm_env.py        (an in-process engine in a temporary home)

In an rLLM config the env is built by ``TvcacheToolEnv.from_dict(env_args)`` with
``env_args = {"tvcache": {"url": ..., "task_id": ..., "template": ...}, **task}``. Here two
rollouts send the same assistant turn of parallel tool calls, then finish.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tvcache import Settings, open_engine
from tvcache.adapters.rllm import TvcacheToolEnv


def bash(call_id: str, command: str) -> dict[str, object]:
    return {"id": call_id, "type": "function",
            "function": {"name": "bash", "arguments": {"command": command}}}  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        template = Path(tmp) / "task"
        template.mkdir()
        (template / "numbers.txt").write_text("3\n1\n2\n")
        engine = open_engine(Settings(home=Path(tmp) / "home"), persist=False)
        env = TvcacheToolEnv(
            engine,
            "sort-numbers",
            task={"question": "What is the largest number?", "answer": "3"},
            template=str(template),
            reward_fn=lambda task_info, action: float(action == task_info["answer"]),
        )
        turn = [bash("c1", "sort -n numbers.txt"), bash("c2", "tail -n 1 numbers.txt")]
        finish = {"id": "c3", "function": {"name": "finish", "arguments": '{"response": "3"}'}}
        for rollout in range(2):
            env.reset()
            observation, _, _, _ = env.step(turn)
            _, reward, done, _ = env.step([finish])
            print(f"rollout {rollout}: {observation['tool_outputs']} reward={reward} done={done}")
        env.close()
        stats = engine.stats()
        print(f"hits: {stats['hits']}, misses: {stats['misses']}")
        engine.close()


if __name__ == "__main__":
    main()
