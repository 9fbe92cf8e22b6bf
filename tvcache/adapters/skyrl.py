"""SkyRL-gym: any ``BaseTextEnv`` whose tool executions go through a tvcache session.

Two halves, because a tool runs where the engine runs:

- :func:`skyrl_engine` makes an engine that serves an env's tool groups (:func:`skyrl_tools`),
  run in the engine's process as the unwrapped env runs them;
- :class:`CachedTextEnv` wraps an env (one line: ``env = CachedTextEnv(env, engine, task_id)``):
  each rollout (``init`` to ``close``) is a session, each tool execution a call keyed by the
  raw tool call (the tool's named arguments and the group's configuration).

Env-added text stays out of the key: the SQL env passes ``turns_left`` only to append
``<reminder>You have N turns left ...</reminder>``; that argument is volatile, the stored
output holds a marker in its place, and the wrapper writes the current reminder back, so
observations are byte-identical to the unwrapped env's. A cache outage raises from ``step``
instead of becoming an observation (the env turns tool exceptions into text the model sees).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sandbox import JSON, Observation, ToolCallError, ToolSpec
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._factory import make_backend
from tvcache._settings import Settings
from tvcache._store import Store
from tvcache.adapters._common import SessionSource
from tvcache.adapters._host import HostTool, HostToolsBackend
from tvcache.client import ToolSession

# tool name -> (volatile argument, the exact text the tool adds for its value)
EnvText = Mapping[str, tuple[str, Callable[[Any], str]]]
REMINDER = "<reminder>You have {} turns left to complete the task.</reminder>"
SKYRL_ENV_TEXT: EnvText = {"sql": ("turns_left", REMINDER.format)}
MARK = "\x00tvcache:env-text\x00"  # stands for the env text in stored outputs
RAISED = 97  # the exit code that says the tool raised; the output is the exception's text


class SkyrlToolError(Exception):
    """A tool raised: ``str()`` is the original exception's text, as the env shows it."""


def _tools_of(group: Any) -> dict[str, list[str]]:
    """Tool name -> its parameter names (without ``self``), from the ``@tool`` descriptors."""
    params = {}
    for name in group.get_tool_names():
        for klass in type(group).__mro__:
            raw = vars(klass).get(name)
            if raw is not None and hasattr(raw, "func"):
                params[name] = list(inspect.signature(raw.func).parameters)[1:]
                break
    return params


def group_config(group: Any) -> str:
    """A digest of a tool group's configuration (its JSON-able attributes): calls of groups
    configured differently (another database directory) never share cache entries."""
    fields = {
        k: v
        for k, v in sorted(vars(group).items())
        if not k.startswith("_") and isinstance(v, str | int | float | bool | type(None))
    }
    text = json.dumps([type(group).__qualname__, fields], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SkyrlTool:
    """One tool of a SkyRL tool group, run in the engine's process on its arguments (it is
    the env's own code, run where the unwrapped env runs it; it touches no sandbox)."""

    def __init__(self, group: Any, name: str, params: list[str], env_text: EnvText) -> None:
        self.group, self.name, self.params = group, name, params
        self.volatile = env_text.get(name) if env_text.get(name, ("",))[0] in params else None
        self.config = group_config(group)
        self.spec = ToolSpec(
            name=name,
            version=f"skyrl:{group.name}:1",
            volatile=frozenset({self.volatile[0]} if self.volatile else ()),
            required=("group_config",),
            description=f"SkyRL-gym tool {name!r} of {group.name}",
        )

    def run(self, args: Mapping[str, Any]) -> Observation:
        if args["group_config"] != self.config:
            raise ToolCallError(
                f"tool {self.name!r} is configured differently in the env than in the engine",
                "build the engine's tools from the env's own tool groups (skyrl_tools(env))",
            )
        positional = [args[p] for p in self.params if p in args]
        try:
            output = self.group.execute_tool(self.name, *positional)
        except Exception as error:
            return Observation(output=str(error), exit_code=RAISED)
        if not isinstance(output, str):
            output = json.dumps(output, default=str)
        if self.volatile is not None:
            arg, render = self.volatile
            before, text, after = output.rpartition(render(args[arg]))
            output = before + MARK + after if text else output
        return Observation(output=output)


def skyrl_tools(env_or_groups: Any, *, env_text: EnvText = SKYRL_ENV_TEXT) -> list[HostTool]:
    """The tvcache tools that run ``env_or_groups``'s tools (an env's ``tool_groups``)."""
    groups: Iterable[Any] = getattr(env_or_groups, "tool_groups", env_or_groups)
    return [
        SkyrlTool(group, name, params, env_text)
        for group in groups
        for name, params in _tools_of(group).items()
    ]


def skyrl_engine(
    env_or_groups: Any,
    settings: Settings | None = None,
    *,
    persist: bool = True,
    env_text: EnvText = SKYRL_ENV_TEXT,
) -> Engine:
    """An engine on the local backend (store as :func:`~tvcache.open_engine` opens it) that
    also serves ``env_or_groups``'s tools, run in this process; ``bash`` stays isolated."""
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    tools = skyrl_tools(env_or_groups, env_text=env_text)
    backend = HostToolsBackend(make_backend(settings, "local"), tools)
    store = Store(settings.resolved_store_url()) if persist else None
    return Engine(backend, store, settings=settings)


class CachedTextEnv:
    """``env`` with its tool executions served by a tvcache session per rollout.

    Everything but ``init``, ``step`` and ``close`` is ``env``'s own (attributes pass
    through). ``template`` and ``options`` are the root's (tools of the SQL env read the
    database from the host, so the sandbox stays empty by default).
    """

    def __init__(
        self,
        env: Any,
        source: SessionSource,
        task_id: str,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        env_text: EnvText = SKYRL_ENV_TEXT,
    ) -> None:
        self.env, self.source, self.task_id = env, source, str(task_id)
        self.template, self.options, self.env_text = template, dict(options or {}), env_text
        self.session: ToolSession | None = None
        self._outage: TvcacheError | None = None
        self._params = {
            group.name: (group_config(group), _tools_of(group)) for group in env.tool_groups
        }
        env._execute_tool = self._execute_tool

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def init(self, prompt: Any) -> Any:
        """Start a rollout: a new session, then the env's own ``init``."""
        self._open()
        return self.env.init(prompt)

    def step(self, action: str) -> Any:
        """The env's step; raises if the cache failed to serve one of its tool calls."""
        self._outage = None
        output = self.env.step(action)
        if self._outage is not None:
            raise self._outage
        return output

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        self.env.close()

    def _open(self) -> ToolSession:
        if self.session is not None:
            self.session.close()
        self.session = self.source.session(
            self.task_id, template=self.template, options=self.options
        )
        return self.session

    def _execute_tool(self, group_name: str, tool_name: str, tool_input: Any) -> str:
        if group_name not in self._params:
            raise ValueError(f"ToolGroup '{group_name}' not found.")  # the env's own words
        config, tools = self._params[group_name]
        if tool_name not in tools:
            raise ValueError(f"Tool '{tool_name}' not found in group '{group_name}'.")
        args: dict[str, JSON] = dict(zip(tools[tool_name], tool_input, strict=False))
        args["group_config"] = config
        session = self.session or self._open()
        try:
            result = session.call(tool_name, **args)
        except TvcacheError as error:
            self._outage = error  # the env would show it to the model: step raises it instead
            raise
        if result.exit_code == RAISED:
            raise SkyrlToolError(result.output)
        volatile = self.env_text.get(tool_name)
        before, mark, after = result.output.rpartition(MARK)
        if volatile is not None and mark:
            return before + volatile[1](args[volatile[0]]) + after
        return result.output
