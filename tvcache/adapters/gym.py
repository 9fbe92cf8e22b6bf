"""A Gymnasium environment whose actions are tool calls, served through tvcache.

``ToolEnv`` is a real ``gymnasium.Env`` when gymnasium is installed (``pip install
'tvcache[gymnasium]'``): text observation and action spaces, ``gym.make("tvcache/ToolEnv-v0",
source=..., task_id=...)`` after :func:`register`, and vector envs. Without gymnasium it keeps
the same API on a plain base class, so agent loops that only need ``reset``/``step`` work.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from typing import Any

from sandbox import JSON
from tvcache.adapters._common import SessionSource, run_call
from tvcache.client import ToolSession

Action = Mapping[str, Any]  # {"tool": "bash", "args": {"command": "ls"}} or its JSON text
ENV_ID = "tvcache/ToolEnv-v0"
MAX_OBSERVATION = 1 << 20  # characters; tool outputs are capped far below (64 KiB by default)
MAX_ACTION = 1 << 16
INFO_KEYS = ("hit", "exit_code", "node_id", "seconds_saved", "tainted", "error")
RESET_OPTIONS = frozenset({"task_id", "template", "options"})

try:
    import gymnasium
    from gymnasium import spaces

    class AnyText(spaces.Text):
        """Text of any characters (a tool's output is not alphanumeric); samples are ASCII."""

        def contains(self, x: Any) -> bool:
            return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    _Base: type = gymnasium.Env
except ImportError:  # the plain API without gymnasium
    gymnasium = None  # type: ignore[assignment]
    _Base = object


def _text_space(max_length: int) -> Any:
    if gymnasium is None:
        return None
    return AnyText(max_length, min_length=0, charset=string.printable)


def _source(source: SessionSource | str | Callable[[], SessionSource]) -> SessionSource:
    if isinstance(source, str):
        from tvcache.client import Client

        return Client(source)
    if hasattr(source, "session"):
        return source
    if callable(source):
        return source()
    raise TypeError(f"source must be an engine, a client, a URL or a function, not {source!r}")


def parse_action(action: object) -> tuple[str, object]:
    """``(tool, args)`` of an action (a mapping or its JSON text); ValueError if malformed."""
    if isinstance(action, str):
        try:
            action = json.loads(action)
        except ValueError as error:
            raise ValueError(
                f'an action must be a JSON object {{"tool": ..., "args": {{...}}}}: {error}'
            ) from None
    if not isinstance(action, Mapping) or not isinstance(action.get("tool"), str):
        raise ValueError('an action must be {"tool": NAME, "args": {...}}; "tool" is missing')
    return action["tool"], action.get("args", {})


class ToolEnv(_Base):  # type: ignore[misc]
    """One task as an environment: an action is a tool call, a reset a new rollout.

    ``reset(options={"task_id"|"template"|"options": ...})`` changes the task for that
    episode. ``step(action)`` returns ``(observation, reward, terminated, truncated, info)``;
    ``info`` always has the keys ``hit, exit_code, node_id, seconds_saved, tainted, error``
    (``error`` is None unless the action was malformed). ``reward`` and ``done`` are the
    task's, functions of the action and the observation; ``truncated`` comes after
    ``max_steps``. A step after the episode ended is refused: call ``reset()``.

    ``source`` is an engine or client, a service URL, or a function that returns one (what
    ``gym.make`` needs: its keyword arguments are deep-copied, an engine cannot be).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(
        self,
        source: SessionSource | str | Callable[[], SessionSource],
        task_id: str,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        max_steps: int = 50,
        reward: Callable[[Action, str], float] = lambda _action, _obs: 0.0,
        done: Callable[[Action, str], bool] = lambda _action, _obs: False,
    ) -> None:
        self.source, self.task_id, self.template = _source(source), task_id, template
        self.options = dict(options or {})
        self.max_steps, self.reward, self.done = max_steps, reward, done
        self.observation_space = _text_space(MAX_OBSERVATION)
        self.action_space = _text_space(MAX_ACTION)
        self.render_mode = None
        self.session: ToolSession | None = None
        self.steps = 0
        self.ended = False

    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Open a new session (a new rollout); ``options`` may name another task for it."""
        if gymnasium is not None:
            super().reset(seed=seed)
        episode = dict(options or {})
        unknown = sorted(set(episode) - RESET_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {', '.join(unknown)}; "
                f"use {', '.join(sorted(RESET_OPTIONS))}"
            )
        self.close()
        task_id = str(episode.get("task_id", self.task_id))
        self.session = self.source.session(
            task_id,
            template=episode.get("template", self.template),
            options=episode.get("options", self.options),
        )
        self.steps, self.ended = 0, False
        return "", {"task_id": task_id}

    def step(self, action: Action | str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.session is None:
            raise RuntimeError("call reset() before step()")
        if self.ended:
            raise RuntimeError("this episode has ended (terminated or truncated): call reset()")
        self.steps += 1
        info: dict[str, Any] = dict.fromkeys(INFO_KEYS)
        try:
            tool, args = parse_action(action)
        except ValueError as error:
            observation, result = f"error: {error}", None
            parsed: Action = {}
        else:
            observation, result = run_call(self.session, tool, args)
            parsed = {"tool": tool, "args": args}
        if result is None:
            info.update(hit=False, error=observation)
        else:
            info.update(
                hit=result.hit,
                exit_code=result.exit_code,
                node_id=result.node_id,
                seconds_saved=result.seconds_saved,
                tainted=result.tainted,
            )
        observation = observation[:MAX_OBSERVATION]
        terminated = bool(self.done(parsed, observation))
        truncated = not terminated and self.steps >= self.max_steps
        self.ended = terminated or truncated
        return observation, float(self.reward(parsed, observation)), terminated, truncated, info

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def register() -> None:
    """Make ``gym.make("tvcache/ToolEnv-v0", source=..., task_id=..., ...)`` work."""
    if gymnasium is None:
        raise ImportError("gymnasium is not installed: pip install 'tvcache[gymnasium]'")
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point=f"{__name__}:ToolEnv")
