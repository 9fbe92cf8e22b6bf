"""OpenAI-style ``tool_calls``: an assistant message in, ``role: "tool"`` replies out.

A malformed call (no function name, arguments that are neither a JSON string nor an object,
an argument the tool does not declare) becomes a reply that says what was wrong, as the model
needs to see; it never reaches the cache, so it can never be keyed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sandbox import JSON, ToolCallError
from tvcache._session import CallResult
from tvcache.adapters._common import field_of, run_call, shown
from tvcache.client import ToolSession

# The arguments the built-in tools take (a declared schema, ``tools=``, takes precedence).
BUILTIN_ARGUMENTS: dict[str, frozenset[str]] = {
    "bash": frozenset({"command", "timeout"}),
    "sqlite": frozenset({"sql", "db", "timeout"}),
}


class AsyncToolSession(Protocol):
    """A session with ``acall``: in-process, :class:`~tvcache.client.RemoteSession` or
    :class:`~tvcache.client.AsyncRemoteSession`."""

    async def acall(self, tool: str, /, **args: JSON) -> CallResult: ...


def declared_arguments(tools: Iterable[object] | None) -> dict[str, frozenset[str]]:
    """Argument names by tool, from OpenAI tool schemas (what ``tools=`` of a chat request
    holds: ``{"type": "function", "function": {"name", "parameters": {"properties"}}}``)."""
    known = dict(BUILTIN_ARGUMENTS)
    for schema in tools or ():
        function = field_of(schema, "function")
        parameters = field_of(function, "parameters") or {}
        known[str(field_of(function, "name"))] = frozenset(field_of(parameters, "properties") or {})
    return known


def parse_call(call: object, known: Mapping[str, frozenset[str]]) -> tuple[str, dict[str, Any]]:
    """``(name, args)`` of one ``tool_calls`` item; ValueError says what is wrong with it."""
    function = field_of(call, "function")
    name = field_of(function, "name") if function is not None else None
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"tool call {field_of(call, 'id')!r} has no function name: "
            "give function.name, the tool to call"
        )
    arguments = field_of(function, "arguments")
    if arguments is None or arguments == "":
        args: object = {}
    elif isinstance(arguments, str):
        try:
            args = json.loads(arguments)
        except ValueError as error:
            raise ValueError(f"arguments of {name!r} are not valid JSON: {error}") from None
    else:
        args = arguments
    if not isinstance(args, Mapping):
        raise ValueError(
            f"arguments of {name!r} must be a JSON object (or its JSON text), "
            f"got {type(args).__name__}"
        )
    allowed = known.get(name)
    unknown = sorted(set(args) - allowed) if allowed is not None else []
    if unknown:
        raise ValueError(
            f"tool {name!r} has no argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(sorted(allowed or ())) or 'none'}"
        )
    return name, dict(args)


def _reply(call: object, content: str) -> dict[str, str]:
    return {"role": "tool", "tool_call_id": str(field_of(call, "id")), "content": content}


def tool_messages(
    session: ToolSession, message: object, *, tools: Iterable[object] | None = None
) -> list[dict[str, str]]:
    """Run an assistant message's ``tool_calls`` in order; the ``role: "tool"`` replies.

    ``message`` is a dict or an SDK object with ``tool_calls: [{id, type: "function",
    function: {name, arguments}}]``; ``arguments`` is a JSON string or an object. ``tools``
    (the chat request's tool schemas) declares which arguments each tool takes.
    """
    known = declared_arguments(tools)
    replies = []
    calls: Sequence[object] = field_of(message, "tool_calls") or []
    for call in calls:
        try:
            name, args = parse_call(call, known)
        except ValueError as error:
            replies.append(_reply(call, f"error: {error}"))
            continue
        content, _result = run_call(session, name, args)
        replies.append(_reply(call, content))
    return replies


async def atool_messages(
    session: AsyncToolSession, message: object, *, tools: Iterable[object] | None = None
) -> list[dict[str, str]]:
    """:func:`tool_messages` with the calls awaited together (``asyncio.gather``), as agent
    frameworks run parallel tool calls: the session executes them in the message's order."""
    known = declared_arguments(tools)
    calls: Sequence[object] = field_of(message, "tool_calls") or []

    async def one(call: object) -> dict[str, str]:
        try:
            name, args = parse_call(call, known)
            result = await session.acall(name, **args)
        except (ValueError, ToolCallError) as error:
            return _reply(call, f"error: {error}")
        return _reply(call, shown(result))

    return list(await asyncio.gather(*(one(call) for call in calls)))
