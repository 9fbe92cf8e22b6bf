"""Request bodies of the HTTP API. Strict: a wrong type is an error, never coerced."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class OpenSession(_Body):
    """A session on the root (task id, backend, template, options); optionally resumed."""

    task_id: str = Field(min_length=1, max_length=512)
    template: str | None = Field(default=None, max_length=4096)
    options: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None
    session_id: str | None = Field(default=None, pattern=_ID)
    at_node: str | None = Field(default=None, pattern=_ID)


class CallRequest(_Body):
    """One tool call; ``seq`` counts the session's calls from 1, ``request_id`` names a try."""

    tool: str = Field(min_length=1, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)
    request_id: str = Field(pattern=_ID)
    seq: int = Field(ge=1)
