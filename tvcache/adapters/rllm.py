"""rLLM: an environment shaped like rLLM's ``BaseEnv``/``ToolEnvironment``, served by tvcache.

rLLM is not on PyPI, so this follows its documented interface without importing it:
``reset() -> (task, info)``, ``step(action) -> (next_obs, reward, done, info)``, a static
``from_dict(env_args)`` that rLLM's execution engine uses to build one env per task, a
static ``is_multithread_safe()``, an ``idx`` it sets, and ``close()``. As in rLLM's
``ToolEnvironment``, an action is a list of OpenAI ``tool_calls`` (or one), a string (the final
answer) or a ``finish`` call; ``next_obs`` is ``{"tool_outputs": {call id: output}}``. The
calls of one action run one at a time in the order of the message (rLLM starts one thread
per call, which would race).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sandbox import JSON
from tvcache.adapters._common import SessionSource
from tvcache.adapters.openai import tool_messages
from tvcache.client import Client, ToolSession

SOURCE_KEYS = ("url", "token", "task_id", "template", "options")


class TvcacheToolEnv:
    """A tool environment over one task: ``TvcacheToolEnv.from_dict({"tvcache": {"url": ...,
    "task_id": ...}, **task})``. ``reward_fn(task_info=..., action=...)`` returns a float or
    an object with ``reward`` and ``metadata`` (rLLM's ``RewardOutput``)."""

    def __init__(
        self,
        source: SessionSource,
        task_id: str,
        *,
        task: Mapping[str, Any] | None = None,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        reward_fn: Callable[..., Any] | None = None,
        max_steps: int = 10,
    ) -> None:
        self.source, self.task_id, self.template = source, task_id, template
        self.options = dict(options or {})
        self.task = dict(task) if task is not None else None
        self.reward_fn, self.max_steps = reward_fn, max_steps
        self.session: ToolSession | None = None
        self.step_count = 0
        self._idx: Any = None

    @property
    def idx(self) -> Any:
        return self._idx

    @idx.setter
    def idx(self, value: Any) -> None:
        self._idx = value

    def reset(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """A new rollout (a new session); the observation is the task, as rLLM's."""
        self.close()
        self.session = self.source.session(
            self.task_id, template=self.template, options=self.options
        )
        self.step_count = 0
        return self.task, {}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        if self.session is None:
            raise RuntimeError("call reset() before step()")
        calls = [action] if isinstance(action, Mapping) else (action or [])
        self.step_count += 1
        finish = next((c for c in calls if _name(c) == "finish"), None)
        if isinstance(action, str) or finish is not None or self.step_count >= self.max_steps:
            answer = action if isinstance(action, str) else _finish_text(finish, calls)
            reward, metadata = self._reward(answer)
            return {}, reward, True, {"response": action, "metadata": metadata}
        replies = tool_messages(self.session, {"tool_calls": calls})
        outputs = {reply["tool_call_id"]: reply["content"] for reply in replies}
        return {"tool_outputs": outputs}, 0.0, False, {"response": action, "metadata": {}}

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _reward(self, answer: str) -> tuple[float, dict[str, Any]]:
        if self.reward_fn is None:
            return 0.0, {}
        out = self.reward_fn(task_info=self.task or {}, action=answer)
        if isinstance(out, int | float):
            return float(out), {}
        return float(out.reward), dict(getattr(out, "metadata", {}) or {})

    @staticmethod
    def from_dict(env_args: dict[str, Any]) -> TvcacheToolEnv:
        """rLLM's constructor: ``env_args["tvcache"]`` says where and which task (``url``,
        ``task_id``, optional ``template``, ``options``, ``token``); ``reward_fn`` and
        ``max_steps`` are taken as rLLM's ``ToolEnvironment`` takes them; the rest is the task."""
        args = dict(env_args)
        where = dict(args.pop("tvcache", None) or {})
        unknown = sorted(set(where) - set(SOURCE_KEYS))
        if unknown or "url" not in where or "task_id" not in where:
            raise ValueError(
                f"env_args['tvcache'] needs url and task_id (may have {', '.join(SOURCE_KEYS)}); "
                f"got {sorted(where)}"
            )
        reward_fn, max_steps = args.pop("reward_fn", None), int(args.pop("max_steps", 10))
        return TvcacheToolEnv(
            Client(where["url"], token=where.get("token")),
            where["task_id"],
            task=args,
            template=where.get("template"),
            options=where.get("options"),
            reward_fn=reward_fn,
            max_steps=max_steps,
        )

    @staticmethod
    def is_multithread_safe() -> bool:
        """Each env has its own session; sessions and clients are thread-safe."""
        return True


def _name(call: object) -> object:
    function = call.get("function") if isinstance(call, Mapping) else None
    return function.get("name") if isinstance(function, Mapping) else None


def _finish_text(finish: Any, calls: list[Any]) -> str:
    if finish is None:
        return str(calls)
    arguments = finish.get("function", {}).get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return str(arguments)
    return str(arguments.get("response", "")) if isinstance(arguments, Mapping) else ""
