"""Request bodies of the HTTP API. Strict: a wrong type is an error, never coerced.

Text must be valid Unicode: JSON can carry a lone surrogate (``"\\ud800"``), which no command,
key or store can hold, so it is refused here with the field that holds it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ID = r"^[A-Za-z0-9_.:-]{1,128}$"


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError as error:
            raise ValueError(
                f"text must be valid Unicode; {value[error.start : error.end]!r} at "
                f"{error.start} is a lone surrogate (encode text as UTF-8)"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _unicode(cls, value: Any) -> Any:
        _check_text(value)
        return value


class OpenSession(_Body):
    """A session on the root (task id, backend, template, options); optionally resumed."""

    task_id: str = Field(min_length=1, max_length=512)
    template: str | None = Field(default=None, max_length=4096)
    options: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None
    session_id: str | None = Field(default=None, pattern=_ID)
    at_node: str | None = Field(default=None, pattern=_ID)

    @field_validator("task_id", "template", "backend")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("must not contain NUL characters (no path or name holds one)")
        return value


class CallRequest(_Body):
    """One tool call; ``seq`` counts the session's calls from 1, ``request_id`` names a try."""

    tool: str = Field(min_length=1, max_length=128)
    args: dict[str, Any] = Field(default_factory=dict)
    request_id: str = Field(pattern=_ID)
    seq: int = Field(ge=1)
