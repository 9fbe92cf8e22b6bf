"""OpenAI-style ``tool_calls`` answered through tvcache: assistant message in, tool messages out.

Run: python examples/openai_tool_calls.py   (an in-process engine in a temporary home)

The same assistant message is answered twice, as two rollouts of a group would send it: the
second time every call is a hit. A call with malformed arguments, or with an argument the
tool does not take, gets an error message back, as the model needs to see, instead of an
exception. The second rollout awaits the calls together (``atool_messages``, as frameworks run
parallel tool calls): they still run one at a time in the message's order.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from tvcache import Settings, open_engine
from tvcache.adapters import atool_messages, tool_messages


def call(call_id: str, name: str, **arguments: object) -> dict[str, object]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tvcache-example-") as tmp:
        template = Path(tmp) / "task"
        template.mkdir()
        (template / "app.py").write_text("print('hello')\n")
        engine = open_engine(Settings(home=Path(tmp) / "home"), persist=False)
        assistant = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("call_1", "bash", command="ls"),
                call("call_2", "bash", command="python3 app.py"),
                {"id": "call_3", "type": "function",
                 "function": {"name": "bash", "arguments": "{not json"}},
                {"id": "call_4", "type": "function",  # arguments as an object work too
                 "function": {"name": "bash", "arguments": {"command": "ls", "cwd": "/"}}},
            ],
        }  # fmt: skip
        with engine.session("hello-app", template=str(template)) as session:
            for reply in tool_messages(session, assistant):
                print(f"rollout 0: {json.dumps(reply)}")
        with engine.session("hello-app", template=str(template)) as session:
            for reply in asyncio.run(atool_messages(session, assistant)):
                print(f"rollout 1: {json.dumps(reply)}")
        print(f"hits: {engine.stats()['hits']}, misses: {engine.stats()['misses']}")
        engine.close()


if __name__ == "__main__":
    main()
