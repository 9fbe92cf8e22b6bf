"""What every adapter shares: where sessions come from, and one call as the text a model sees."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sandbox import JSON, ToolCallError
from tvcache._session import CallResult
from tvcache.client import ToolSession


class SessionSource(Protocol):
    """An in-process :class:`~tvcache.Engine` or a :class:`~tvcache.client.Client`."""

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
    return shown(result), result


def shown(result: CallResult) -> str:
    """A result as the model sees it: the output, then ``[exit code N]`` when non-zero."""
    note = f"\n[exit code {result.exit_code}]" if result.exit_code else ""
    return result.output + note


def field_of(item: object, name: str) -> Any:
    """``item[name]`` for dicts, ``item.name`` for SDK objects (openai's pydantic models)."""
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)
