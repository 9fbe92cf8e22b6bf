"""Tools that run in the engine's process, beside a backend whose own tools run in sandboxes.

A framework's environment brings tools that are its own trusted code and touch no sandbox
(SkyRL-gym's SQL tool reads the task's database from the trainer's disk, as it does without
tvcache). The local backend runs every Python tool inside the sandbox's isolation, where that
code and those files are not, so these tools are served by a thin wrapper around the backend:
their calls run here, everything else (``bash`` stays isolated) goes to the backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from sandbox import Backend, Observation, RootSpec, Sandbox, ToolCall, ToolSpec
from snapshots import SnapshotHandle


class HostTool(Protocol):
    """A tool run in this process: its ``spec`` and ``run(args)``."""

    spec: ToolSpec

    def run(self, args: Mapping[str, Any]) -> Observation: ...


class HostSandbox:
    """``inner`` with the host tools' calls answered in this process."""

    def __init__(self, inner: Sandbox, tools: Mapping[str, HostTool]) -> None:
        self.inner, self.tools = inner, tools

    def run(self, call: ToolCall, timeout: float | None = None) -> Observation:
        tool = self.tools.get(call.tool)
        if tool is None:
            return self.inner.run(call, timeout)
        start = time.perf_counter()
        observation = tool.run(tool.spec.validate(call.args))
        return replace(observation, seconds=time.perf_counter() - start)

    def fingerprint(self) -> str | None:
        """None, always: host tools may hold state (the trainer's files, the env's objects)
        that no fingerprint of the sandbox sees, and their statelessness is a contract nothing
        checks, so no state-aware merge may rest on the sandbox's fingerprint alone."""
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class HostToolsBackend:
    """``inner`` plus ``tools`` that run in this process (see the module's docstring)."""

    def __init__(self, inner: Backend, tools: Iterable[HostTool]) -> None:
        self.inner = inner
        self.tools = {tool.spec.name: tool for tool in tools}

    @property
    def name(self) -> str:
        return self.inner.name

    def tool_specs(self) -> Mapping[str, ToolSpec]:
        return {**self.inner.tool_specs(), **{n: t.spec for n, t in self.tools.items()}}

    def start(self, spec: RootSpec) -> HostSandbox:
        return HostSandbox(self.inner.start(spec), self.tools)

    def fork(self, handle: SnapshotHandle) -> HostSandbox:
        return HostSandbox(self.inner.fork(handle), self.tools)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
