"""Adapters for agent loops: a Gymnasium-style environment and OpenAI-style ``tool_calls``.

Both work on any session source with ``session(task_id, template=..., options=...)``: an
in-process :class:`~tvcache.Engine` or a :class:`~tvcache.client.Client`. A malformed action
(bad JSON, unknown tool, missing argument) is not an exception: it becomes an observation
that says what was wrong, as an agent loop needs to show the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sandbox import JSON, ToolCallError
from tvcache._session import CallResult
from tvcache.client import ToolSession

Action = Mapping[str, Any]  # {"tool": "bash", "args": {"command": "ls"}}


class SessionSource(Protocol):
    def session(
        self, task_id: str, /, *, template: str | None = ..., options: Mapping[str, JSON] = ...
    ) -> ToolSession: ...


def run_call(session: ToolSession, tool: str, args: object) -> tuple[str, CallResult | None]:
    """The text an agent sees for one call (output, then ``[exit code N]`` when non-zero),
    and the result; a malformed call gives ``error: ...`` and no result."""
    try:
        if not isinstance(args, Mapping):
            raise ToolCallError(f"arguments must be a JSON object, got {type(args).__name__}")
        result = session.call(tool, **args)
    except ToolCallError as error:
        return f"error: {error}", None
    note = f"\n[exit code {result.exit_code}]" if result.exit_code else ""
    return result.output + note, result


class ToolEnv:
    """A Gymnasium-style environment over one task: an action is a tool call.

    ``reset()`` opens a new session (a new rollout) and returns ``("", info)``;
    ``step(action)`` returns ``(observation, reward, terminated, truncated, info)`` with
    ``info`` holding ``hit``, ``exit_code``, ``node_id``, ``seconds_saved``, ``tainted``
    (or ``error``). ``reward`` and ``done`` are the task's: functions of the action and the
    text observation; ``truncated`` becomes True after ``max_steps`` steps.
    """

    def __init__(
        self,
        source: SessionSource,
        task_id: str,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        max_steps: int = 50,
        reward: Callable[[Action, str], float] = lambda _action, _obs: 0.0,
        done: Callable[[Action, str], bool] = lambda _action, _obs: False,
    ) -> None:
        self.source, self.task_id, self.template = source, task_id, template
        self.options = dict(options or {})
        self.max_steps, self.reward, self.done = max_steps, reward, done
        self.session: ToolSession | None = None
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        self.close()
        self.session = self.source.session(
            self.task_id, template=self.template, options=self.options
        )
        self.steps = 0
        return "", {"task_id": self.task_id}

    def step(self, action: Action) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.session is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        observation, result = run_call(
            self.session, str(action.get("tool")), action.get("args", {})
        )
        info: dict[str, Any] = {"error": observation} if result is None else {
            "hit": result.hit,
            "exit_code": result.exit_code,
            "node_id": result.node_id,
            "seconds_saved": result.seconds_saved,
            "tainted": result.tainted,
        }  # fmt: skip
        terminated = self.done(action, observation)
        truncated = not terminated and self.steps >= self.max_steps
        return observation, self.reward(action, observation), terminated, truncated, info

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def _field(item: object, name: str) -> Any:
    """``item[name]`` for dicts, ``item.name`` for SDK objects (openai's pydantic models)."""
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def tool_messages(session: ToolSession, message: object) -> list[dict[str, str]]:
    """Run an assistant message's ``tool_calls`` in order; the ``role: "tool"`` replies.

    ``message`` is a dict or an SDK object with ``tool_calls: [{id, type: "function",
    function: {name, arguments}}]`` (``arguments`` a JSON string). Each reply's ``content``
    is what :func:`run_call` gives.
    """
    replies = []
    calls: Sequence[object] = _field(message, "tool_calls") or []
    for call in calls:
        function = _field(call, "function")
        name, arguments = _field(function, "name"), _field(function, "arguments") or "{}"
        try:
            args = json.loads(arguments)
        except ValueError as error:
            content = f"error: arguments of {name!r} are not valid JSON: {error}"
        else:
            content, _result = run_call(session, str(name), args)
        replies.append(
            {"role": "tool", "tool_call_id": str(_field(call, "id")), "content": content}
        )
    return replies
