"""verl: a ``BaseTool`` whose executions go through a `tvcache serve` session per rollout.

A verl user adds one entry to the tool-config YAML (``examples/verl_tool_config.yaml``)::

    tools:
      - class_name: tvcache.adapters.verl.TvcacheTool
        config: {type: native, url: "http://127.0.0.1:8765", task_id: my-task, tool: bash}
        tool_schema: {type: function, function: {name: bash, ...}}

verl's agent loop calls ``create``/``execute``/``release`` around every single tool call, so
an instance is one call; the session is the rollout's, keyed by its request id
(``agent_data.request_id``, else ``request_id`` in the keyword arguments, else the instance
id). Tools of one rollout share its session and history. verl never says a rollout ended:
sessions idle for ``idle_seconds`` (config, default 600) are closed at the next call, and
:meth:`TvcacheTool.close_all` closes the rest. ``create_kwargs`` (the dataset row's
``tools_kwargs``) may set ``task_id``, ``template`` and ``options`` per task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox import JSON, ToolCallError
from tvcache.adapters._common import shown
from tvcache.client import AsyncClient, AsyncRemoteSession

_Base: type
ToolResponse: Any
try:
    from verl.tools import base_tool, schemas

    _Base, ToolResponse = base_tool.BaseTool, schemas.ToolResponse
except ImportError:  # documented interface only; constructing a tool then says what to install
    _Base, ToolResponse = object, None

TASK_KEYS = ("task_id", "template", "options")


@dataclass
class _Rollout:
    """One request id's session (opened once, by the first call that needs it)."""

    opening: asyncio.Task[AsyncRemoteSession]
    used: float = field(default_factory=time.monotonic)


class TvcacheTool(_Base):  # type: ignore[misc]
    """A verl tool served by tvcache: ``config`` has ``url`` (of `tvcache serve`),
    ``task_id``, and optionally ``tool`` (the tvcache tool; default: the schema's name),
    ``template``, ``options``, ``token``, ``idle_seconds``."""

    def __init__(self, config: dict[str, Any], tool_schema: Any) -> None:
        if ToolResponse is None:
            raise ImportError("verl is not importable: pip install 'tvcache[verl]'")
        super().__init__(config, tool_schema)
        self.tool = str(config.get("tool", self.name))
        self.idle_seconds = float(config.get("idle_seconds", 600.0))
        self.client = AsyncClient(config["url"], token=config.get("token"))
        self.task = {key: config[key] for key in TASK_KEYS if key in config}
        self.instances: dict[str, dict[str, Any]] = {}  # instance id -> its task
        self.rollouts: dict[str, _Rollout] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        instance_id = instance_id or str(uuid.uuid4())
        create_kwargs = kwargs.get("create_kwargs") or {}
        unknown = sorted(set(create_kwargs) - set(TASK_KEYS))
        if unknown:
            raise ValueError(f"unknown create_kwargs {unknown}; use {', '.join(TASK_KEYS)}")
        self.instances[instance_id] = self.task | dict(create_kwargs)
        return instance_id, ToolResponse()

    async def execute(
        self, instance_id: str, parameters: dict[str, Any], **kwargs: Any
    ) -> tuple[Any, float, dict[str, Any]]:
        """Serve the call on the rollout's session; a malformed call is an error text."""
        task = self.instances.get(instance_id, self.task)
        agent_data = kwargs.get("agent_data")
        request_id = str(
            getattr(agent_data, "request_id", None) or kwargs.get("request_id") or instance_id
        )
        if not isinstance(parameters, Mapping):
            text = f"error: arguments must be a JSON object, got {type(parameters).__name__}"
            return ToolResponse(text=text), 0.0, {}
        await self._expire(keep=request_id)
        session = await self._session(request_id, task)
        try:
            result = await session.acall(self.tool, **parameters)
        except ToolCallError as error:
            return ToolResponse(text=f"error: {error}"), 0.0, {}
        metrics = {"hit": result.hit, "exit_code": result.exit_code, "tainted": result.tainted}
        return ToolResponse(text=shown(result)), 0.0, metrics

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """The call is done; the rollout's session stays open for its next call."""
        self.instances.pop(instance_id, None)

    async def close_all(self) -> None:
        """Close every rollout's session (at the end of a training step, or on shutdown)."""
        rollouts, self.rollouts = list(self.rollouts.values()), {}
        for rollout in rollouts:
            await _close(rollout)

    async def _session(self, request_id: str, task: Mapping[str, Any]) -> AsyncRemoteSession:
        rollout = self.rollouts.get(request_id)
        if rollout is None:  # one opening per request, however many calls arrive at once
            options: Mapping[str, JSON] = task.get("options") or {}
            opening = self.client.session(
                str(task["task_id"]), template=task.get("template"), options=options
            )
            rollout = self.rollouts[request_id] = _Rollout(asyncio.ensure_future(opening))
        rollout.used = time.monotonic()
        try:
            return await asyncio.shield(rollout.opening)
        except Exception:
            if self.rollouts.get(request_id) is rollout:
                del self.rollouts[request_id]  # the next call tries to open it again
            raise

    async def _expire(self, keep: str) -> None:
        now = time.monotonic()
        for request_id, rollout in list(self.rollouts.items()):
            if request_id != keep and now - rollout.used > self.idle_seconds:
                del self.rollouts[request_id]
                await _close(rollout)


async def _close(rollout: _Rollout) -> None:
    try:
        session = await rollout.opening
    except Exception:
        return  # it never opened: nothing to close
    await session.aclose()
