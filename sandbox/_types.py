"""Values shared by every backend: a tool call, its observation, a root's spec, a tool's spec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapshots import TvcacheError

JSON = Any  # a value that survives json.dumps / json.loads unchanged


class ToolCallError(TvcacheError):
    """A tool call was malformed: unknown tool, args that are not a JSON object, a bad arg."""


MAX_TIMEOUT = 86_400.0  # a day; far larger values overflow the operating system's waits


def call_timeout(args: Mapping[str, JSON], default: float) -> float:
    """A call's timeout: its ``timeout`` arg, else ``default``; positive, at most a day."""
    chosen = args.get("timeout", default)
    if (
        isinstance(chosen, bool)
        or not isinstance(chosen, int | float)
        or not 0 < chosen <= MAX_TIMEOUT
    ):
        raise ToolCallError(
            f"timeout must be a positive number of seconds, at most {MAX_TIMEOUT:.0f}; "
            f"got {chosen!r}",
            "pass e.g. timeout=60, or leave it out for the server's default",
        )
    return float(chosen)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """``{tool, args}`` as an agent sent it. ``args`` must be a JSON object."""

    tool: str
    args: Mapping[str, JSON] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"tool": self.tool, "args": dict(self.args)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ToolCall:
        data = json.loads(text)
        return cls(tool=data["tool"], args=data["args"])


TRUNCATION_MARKER = "\n[tvcache: output truncated to {kept} of {total} bytes]\n"


def cap_output(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes plus a visible marker; never silently."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return text, False
    kept = raw[:max_bytes].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER.format(kept=max_bytes, total=len(raw)), True


@dataclass(frozen=True, slots=True)
class Observation:
    """What a tool call returned. ``seconds`` is wall time of the execution that produced it.

    ``read_only`` is the tool's *proof* that the call changed no state (the ``sqlite`` tool
    knows it exactly); it is not part of what the agent sees and is never guessed.
    ``nondeterministic`` is the sandbox's word that a fresh run of the same history may see
    other output (a background process could write into it): the engine marks its node so.
    """

    output: str
    exit_code: int = 0
    seconds: float = 0.0
    truncated: bool = False
    timed_out: bool = False
    read_only: bool = False
    nondeterministic: bool = False

    def same_as(self, other: Observation) -> bool:
        """Equal as the agent sees it: everything but the time it took."""
        return (
            self.output == other.output
            and self.exit_code == other.exit_code
            and self.truncated == other.truncated
            and self.timed_out == other.timed_out
        )

    def to_dict(self) -> dict[str, JSON]:
        return {
            "output": self.output,
            "exit_code": self.exit_code,
            "seconds": self.seconds,
            "truncated": self.truncated,
            "timed_out": self.timed_out,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, JSON]) -> Observation:
        return cls(
            output=str(data["output"]),
            exit_code=int(data.get("exit_code", 0)),
            seconds=float(data.get("seconds", 0.0)),
            truncated=bool(data.get("truncated", False)),
            timed_out=bool(data.get("timed_out", False)),
        )


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the cache must know of a tool to key its calls.

    ``version`` is part of every call's key: bump it when the tool's behaviour changes.
    ``volatile`` args (a request id, a timeout) are left out of the key. A tool that is not
    ``deterministic`` gets its nodes marked nondeterministic and snapshotted on first execution.
    Claims are checked, never trusted: ``read_only`` (its calls change no state) makes the
    engine fingerprint the state around each call, and a call that changed it is a write;
    ``pure`` (output depends on the arguments only) shares observations across a root's states
    like :attr:`StateAwareness.pure_tools`, with the same check.
    """

    name: str
    version: str = "1"
    volatile: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()
    deterministic: bool = True
    description: str = ""
    read_only: bool = False
    pure: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not self.name.isprintable():
            raise ToolCallError(
                f"a tool's name must be a non-empty printable string, got {self.name!r}",
                'e.g. ToolSpec(name="grep")',
            )
        if not isinstance(self.version, str) or not self.version:
            raise ToolCallError(
                f"tool {self.name!r}: version must be a non-empty string, got {self.version!r}",
                'e.g. version="1"; bump it whenever the tool\'s output changes',
            )
        if isinstance(self.volatile, str) or isinstance(self.required, str):
            raise ToolCallError(
                f"tool {self.name!r}: volatile and required are collections of names, not a str",
                'e.g. volatile=frozenset({"timeout"}), required=("pattern",)',
            )
        object.__setattr__(self, "volatile", frozenset(self.volatile))
        object.__setattr__(self, "required", tuple(self.required))

    def validate(self, args: object) -> Mapping[str, JSON]:
        """Return ``args`` if it is a JSON object with the required fields, else raise."""
        if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
            raise ToolCallError(
                f"args of tool {self.name!r} must be a JSON object with string keys, "
                f"got {type(args).__name__}",
                "pass keyword arguments, e.g. call('bash', command='ls')",
            )
        missing = [name for name in self.required if name not in args]
        if missing:
            raise ToolCallError(
                f"tool {self.name!r} needs argument(s) {', '.join(missing)}",
                f"call it as call({self.name!r}, "
                + ", ".join(f"{m}=..." for m in self.required)
                + ")",
            )
        try:  # text must be UTF-8: a lone surrogate can be neither run, keyed nor stored
            json.dumps(dict(args), allow_nan=False, ensure_ascii=False).encode()
        except (TypeError, ValueError) as error:
            raise ToolCallError(
                f"args of tool {self.name!r} are not JSON-serialisable: {error}",
                "use only str, int, float, bool, None, lists and dicts",
            ) from error
        return args


@dataclass(frozen=True, slots=True)
class RootSpec:
    """An environment's starting state, as the user names it.

    ``template`` is what the backend starts from (a directory for the local backend, an image
    for Docker); ``options`` are the environment options that change behaviour. Rollouts share
    cache entries only under equal specs (and equal template content).
    """

    task_id: str
    backend: str = "local"
    template: str | None = None
    options: Mapping[str, JSON] = field(default_factory=dict)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "task_id": self.task_id,
            "backend": self.backend,
            "template": self.template,
            "options": dict(self.options),
        }
