"""Tools: a registry, the two ways to write one, and ``bash`` and ``sqlite`` written that way.

A tool is declared once (its :class:`ToolSpec`) and runs in a sandbox of either backend, as

- a :class:`ShellTool`: a command built from the arguments, run in the sandbox's shell exactly
  like a ``bash`` call (the same isolation, the same persistent working directory and exports);
- a Python callable (:func:`tool`, or a :class:`LocalTool` subclass): it gets a
  :class:`ToolSandbox`, the sandbox's file-system root and an ``exec`` handle for commands.
  Both backends ship its module to where commands run (the container; the bubblewrap
  isolation) and call it there with ``python3`` (:mod:`sandbox._tool_runner`), so its module
  may import only the standard library and ``tvcache``'s or ``sandbox``'s tool names.

A tool runs in a :class:`ToolContext`: the sandbox's root directory (the agent's ``$HOME``), a
private directory beside it that commands do not see, and the shell state (working directory and
exported variables) that ``bash`` carries from call to call and that snapshots record.

With an :class:`~sandbox._isolation.Isolation` in the context, ``bash`` runs each command in
bubblewrap namespaces where the root is mounted at ``/sandbox``; without one (the explicit
opt-out) commands run as the server and see the real path, which outputs show as ``/sandbox``.
Either way the same history gives the same output in every fork.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import selectors
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox._types import (
    JSON,
    TRUNCATION_MARKER,
    Observation,
    ToolCallError,
    ToolSpec,
    cap_output,
)

if TYPE_CHECKING:  # the Docker backend ships this module into containers: stdlib and _types only
    from sandbox._isolation import Isolation
    from sandbox._supervisor import Supervisor

log = logging.getLogger(__name__)

PUBLIC_ROOT = "/sandbox"
INNER_ROOT = PUBLIC_ROOT  # where isolated commands see the sandbox root
INNER_STATE = "/run/tvcache"  # and its private state (read-only, ``out/`` writable)
ROOT_PLACEHOLDER = "@@TVCACHE_SANDBOX_ROOT@@"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_DB = "db.sqlite"
TIMEOUT_EXIT_CODE = 124
TIMEOUT_NOTE = "\n[tvcache: timed out after {seconds:g} s; the command was killed]\n"


@dataclass(slots=True)
class ShellState:
    """What makes separate ``bash`` processes behave as one shell, in a fork-portable form.

    ``cwd`` is relative to the sandbox root (absolute only when outside the sandbox directory);
    ``env`` is ``export -p`` output with the sandbox root replaced by :data:`ROOT_PLACEHOLDER`.
    """

    cwd: str = "."
    env: str = ""

    def to_dict(self) -> dict[str, JSON]:
        return {"cwd": self.cwd, "env": self.env}

    @classmethod
    def from_dict(cls, data: Mapping[str, JSON]) -> ShellState:
        return cls(cwd=str(data.get("cwd", ".")), env=str(data.get("env", "")))


def initial_env(extra: Mapping[str, str]) -> str:
    """The exported variables of a fresh sandbox: a fixed, host-independent set plus ``extra``."""
    env = {"HOME": ROOT_PLACEHOLDER, "PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
    env.update(extra)
    quoted = {k: shlex.quote(v) for k, v in env.items()}
    quoted["HOME"] = f'"{ROOT_PLACEHOLDER}"'  # replaced by the real root when loaded
    return "".join(f"export {name}={value}\n" for name, value in sorted(quoted.items()))


@dataclass(slots=True)
class ToolContext:
    """Where a tool runs. ``shell`` is mutable: ``bash`` updates it after each call."""

    root: Path
    private: Path
    shell: ShellState
    max_output_bytes: int
    options: Mapping[str, JSON] = field(default_factory=dict)
    isolation: Isolation | None = None
    supervisor: Supervisor | None = None  # made at the first isolated call, if it uses one

    @property
    def inside(self) -> str:
        """The root's path as commands see it."""
        return INNER_ROOT if self.isolation is not None else str(self.root)

    def public(self, text: str) -> str:
        """``text`` with the sandbox's real path shown as ``/sandbox``."""
        return text.replace(str(self.root), PUBLIC_ROOT)

    def exec(self, command: str, timeout: float) -> tuple[int, str]:
        """Run ``command`` in a subshell of the sandbox's shell: exit code and merged output.

        The same run path as ``bash`` (isolated alike); a subshell, so ``cd`` and ``export``
        in it do not persist.
        """
        observation = BashTool().run(self, {"command": f"(\n{command}\n)"}, timeout)
        return observation.exit_code, observation.output


class LocalTool(ABC):
    """One tool of the local backend. Subclasses set ``spec`` and implement ``run``.

    ``run`` returns failures of the command itself (non-zero exit, SQL error) as observations;
    it raises :class:`ToolCallError` only for malformed calls.
    """

    spec: ToolSpec

    @abstractmethod
    def run(self, ctx: ToolContext, args: Mapping[str, JSON], timeout: float) -> Observation: ...


class ToolRegistry:
    """Tools by name. Registering a name twice replaces the earlier tool."""

    def __init__(self, tools: Iterable[LocalTool] = ()) -> None:
        self._tools: dict[str, LocalTool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: LocalTool) -> None:
        if not isinstance(tool, LocalTool) or not isinstance(getattr(tool, "spec", None), ToolSpec):
            raise ToolCallError(
                f"{tool!r} is not a tool",
                "pass ShellTool or LocalTool instances with a ToolSpec, or @tool functions",
            )
        self._tools[tool.spec.name] = tool

    def get(self, name: str) -> LocalTool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolCallError(
                f"unknown tool {name!r}", f"known tools: {', '.join(sorted(self._tools))}"
            ) from None

    def specs(self) -> dict[str, ToolSpec]:
        return {name: tool.spec for name, tool in sorted(self._tools.items())}

    def __iter__(self) -> Iterator[LocalTool]:
        return iter(list(self._tools.values()))


def default_tools() -> list[LocalTool]:
    return [BashTool(), SqliteTool()]


class OutputBuffer:
    """The head of a stream, kept up to a memory bound; the rest is only counted.

    The bound is well above the output cap because replacing the sandbox path shortens text.
    """

    def __init__(self, max_output_bytes: int) -> None:
        self.max_output_bytes = max_output_bytes
        self._keep = 4 * max_output_bytes + 64 * 1024
        self._data = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self._keep - len(self._data)
        self._data += data[:room]
        self.dropped += max(0, len(data) - room)

    def finish(self, ctx: ToolContext) -> tuple[str, bool]:
        """Decoded, with ``/sandbox`` for the real root, capped with a visible marker."""
        text = ctx.public(self._data.decode("utf-8", errors="replace"))
        return cap_text(text, self.dropped, self.max_output_bytes)


def cap_text(text: str, dropped: int, max_bytes: int) -> tuple[str, bool]:
    """:func:`cap_output`, when ``dropped`` bytes after ``text`` were already thrown away."""
    if dropped == 0:
        return cap_output(text, max_bytes)
    raw = text.encode("utf-8", errors="replace")
    kept = raw[:max_bytes].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER.format(kept=max_bytes, total=len(raw) + dropped), True


def timeout_observation(text: str, truncated: bool, timeout: float) -> Observation:
    return Observation(
        output=text + TIMEOUT_NOTE.format(seconds=timeout),
        exit_code=TIMEOUT_EXIT_CODE,
        truncated=truncated,
        timed_out=True,
    )


# ----------------------------------------------------------------------------------------- bash

# $1 private dir (cmd, env.in; out/ for the state written back), $2 working directory, $3 sandbox
# root. The user command runs at top level (so `cd` and `export` take effect) through eval; the
# EXIT trap records the state even after `exit`. One line, so that bash's "line N" in error
# messages counts the user's lines only. Isolated, _LIMITS comes first: $4-$7 are hard limits.
_LIMITS = 'ulimit -HS -v "$4" && ulimit -HS -u "$5" && ulimit -HS -t "$6" && ulimit -HS -f "$7"'
_LIMITS += " || exit 125; "
_STATE_FILES = ("cwd.out", "env.out")
_STATE_MAX_BYTES = 16 * 1024 * 1024
_WRAPPER = "; ".join(
    [
        "__tvc_s=$1",
        'cd -- "$2" 2>/dev/null || cd -- "$3"',
        "__tvc_pwd=$PWD",
        'source "$__tvc_s/env.in"',
        "PWD=$__tvc_pwd",
        "set --",
        'trap \'__tvc_rc=$?; pwd >"$__tvc_s/out/cwd.out"; export -p >"$__tvc_s/out/env.out"; '
        "exit $__tvc_rc' EXIT",
        "IFS= read -r -d '' __tvc_cmd <\"$__tvc_s/cmd\"",
        'eval "$__tvc_cmd"',
    ]
)


class ShellTool(LocalTool):
    """A tool that is a shell command: subclasses set ``spec`` and build it in :meth:`command`.

    It runs as a ``bash`` call would, on either backend (locally through the same bubblewrap
    isolation; in Docker in the container's session shell), so ``cd`` and ``export`` in it
    persist. Quote every argument (:func:`shlex.quote`): they come from the model.

    >>> class Grep(ShellTool):
    ...     spec = ToolSpec(name="grep", required=("pattern",), read_only=True)
    ...     def command(self, args):
    ...         return f"grep -rn -- {shlex.quote(str(args['pattern']))} ."
    """

    @abstractmethod
    def command(self, args: Mapping[str, JSON]) -> str:
        """The command line for a call with ``args``; raise :class:`ToolCallError` if bad."""

    def shell_command(self, args: Mapping[str, JSON]) -> str:
        """:meth:`command`, checked: a string without NUL characters."""
        command = self.command(args)
        if not isinstance(command, str) or "\0" in command:
            raise ToolCallError(
                f"{self.spec.name}: the command must be a string without NUL characters",
                "check the tool's arguments (or its command() method)",
            )
        return command

    def run(self, ctx: ToolContext, args: Mapping[str, JSON], timeout: float) -> Observation:
        command = self.shell_command(args)
        bash = shutil.which("bash") or "/bin/bash"
        inside = ctx.inside
        (ctx.private / "cmd").write_text(command, encoding="utf-8", errors="replace")
        (ctx.private / "env.in").write_text(ctx.shell.env.replace(ROOT_PLACEHOLDER, inside))
        out = ctx.private / "out"
        out.mkdir(exist_ok=True)  # LocalSandbox makes it (owned by the sandbox uid)
        for name in _STATE_FILES:
            _remove(out / name)
        cwd = os.path.normpath(os.path.join(inside, ctx.shell.cwd))
        buffer = OutputBuffer(ctx.max_output_bytes)
        if ctx.isolation is None:
            argv = [bash, "-c", _WRAPPER, "bash", str(ctx.private), cwd, inside]
            code = _spawn(argv, ctx.root, buffer, timeout)
        else:
            limits = ctx.isolation.limits.ulimit_args()
            inner = [bash, "-c", _LIMITS + _WRAPPER, "bash", INNER_STATE, cwd, inside, *limits]
            network = ctx.options.get("network") is True
            if ctx.isolation.uses_supervisor:
                code = _supervised(ctx, inner, network, buffer, timeout)
            else:
                argv = ctx.isolation.command(ctx.root, ctx.private, inner, network=network)
                code = _spawn(argv, ctx.root, buffer, timeout)
        text, truncated = buffer.finish(ctx)
        if code is None:
            return timeout_observation(text, truncated, timeout)
        recorded = self._record(ctx)
        if ctx.isolation is not None and not recorded and code == 1 and _jail_failed(text):
            from sandbox._isolation import IsolationError

            raise IsolationError(
                f"{self.spec.name}: the isolated command did not start: {text.strip()}",
                "run `tvcache doctor`; it tries an isolated command and says what is missing",
            )
        return Observation(
            output=text, exit_code=128 - code if code < 0 else code, truncated=truncated
        )

    @staticmethod
    def _record(ctx: ToolContext) -> bool:
        """Take the working directory and environment the command left; False if it left none."""
        out = ctx.private / "out"
        cwd_raw, env_raw = (_read_regular(out / name) for name in _STATE_FILES)
        if cwd_raw is None or env_raw is None:  # the command replaced our EXIT trap
            return False
        cwd = cwd_raw.decode(errors="surrogateescape").removesuffix("\n")
        env = env_raw.decode(errors="surrogateescape")
        inside = ctx.inside
        # outside the isolation, the sandbox's own directory (root's parent) counts as inside
        base = inside if ctx.isolation is not None else str(ctx.root.parent)
        if cwd == base or cwd.startswith(base.rstrip("/") + "/"):
            cwd = os.path.relpath(cwd, inside)
        ctx.shell.cwd = cwd
        ctx.shell.env = env.replace(inside, ROOT_PLACEHOLDER)
        return True


class BashTool(ShellTool):
    """``bash``: one fresh process per call that behaves as one persistent shell.

    Persist across calls (and snapshots): the working directory and exported variables. Do not
    persist: shell functions, aliases, unexported variables, options (``set -e``), traps, and
    processes — isolated, every process of the sandbox's PID namespace is killed when the
    command ends or times out; unisolated, its process group is.
    """

    spec = ToolSpec(
        name="bash",
        version="1",
        volatile=frozenset({"timeout"}),
        required=("command",),
        description="Run a bash command in the sandbox; stdout and stderr are merged.",
    )

    def command(self, args: Mapping[str, JSON]) -> str:
        command = args["command"]
        if not isinstance(command, str) or "\0" in command:
            raise ToolCallError("bash: 'command' must be a string without NUL characters")
        return command


def _spawn(argv: list[str], cwd: Path, buffer: OutputBuffer, timeout: float) -> int | None:
    """Run ``argv`` as a new session; its exit status, or None if it timed out."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env={},
        start_new_session=True,
    )
    return None if _collect(proc, buffer, timeout) else proc.returncode


def _supervised(
    ctx: ToolContext, argv: list[str], network: bool, buffer: OutputBuffer, timeout: float
) -> int | None:
    """Run ``argv`` as a fork of the sandbox's supervisor (started at the first call)."""
    from sandbox._isolation import IsolationError
    from sandbox._supervisor import Supervisor, SupervisorError

    assert ctx.isolation is not None
    if ctx.supervisor is None:
        ctx.supervisor = Supervisor(ctx.isolation, ctx.root, ctx.private, network)
    try:
        return ctx.supervisor.run(argv, timeout, buffer)
    except SupervisorError as error:
        raise IsolationError(
            f"bash: the sandbox's isolation failed: {error}",
            "run `tvcache doctor`; it tries an isolated command and says what is missing",
        ) from error


def _jail_failed(text: str) -> bool:
    """Whether output is bubblewrap's or setpriv's own error (the command never ran)."""
    return text.startswith(("bwrap: ", "setpriv: "))


def _remove(path: Path) -> None:
    """Remove ``path`` whatever the command made of it (file, link, FIFO, directory)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file: never a link, FIFO or device the command
    put there to make the server read (or block on) something else. Capped in size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _STATE_MAX_BYTES:
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _collect(proc: subprocess.Popen[bytes], buffer: OutputBuffer, timeout: float) -> bool:
    """Read merged output until bash exits or ``timeout``; then kill its process group.

    Returns whether it timed out. Waiting for bash (not for EOF) keeps ``cmd &`` from blocking.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        pidfd = _pidfd(proc.pid)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        open_ = True
        try:
            while proc.poll() is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                selector.select(remaining if pidfd is not None else min(remaining, 0.02))
                if open_ and not _drain(fd, buffer):
                    open_ = False
                    selector.unregister(fd)
        finally:
            if pidfd is not None:
                selector.unregister(pidfd)
                os.close(pidfd)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        drain_until = time.monotonic() + 1.0  # processes that left the group may hold the pipe
        while open_ and _drain(fd, buffer) and time.monotonic() < drain_until:
            selector.select(drain_until - time.monotonic())
    proc.stdout.close()
    return timed_out


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _drain(fd: int, buffer: OutputBuffer) -> bool:
    """Read what is available; False at end of file."""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        buffer.add(chunk)


# ------------------------------------------------------------------------------- Python tools


@dataclass(frozen=True, slots=True)
class ToolSandbox:
    """What a Python tool sees of its sandbox: the file-system ``root``, the root spec's
    ``options``, the call's ``timeout`` (the tool should respect it: a Python callable cannot
    be interrupted from outside) and :meth:`exec` for commands in the sandbox."""

    root: Path
    options: Mapping[str, JSON]
    timeout: float
    context: ToolContext

    def exec(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        """Run ``command`` in a subshell in the sandbox: exit code and merged output."""
        return self.context.exec(command, self.timeout if timeout is None else timeout)


ToolFunction = Callable[..., object]
"""``function(sandbox: ToolSandbox, **args)`` returning text, an :class:`Observation` or JSON."""


class PythonTool(LocalTool):
    """A tool that is a Python callable ``function(sandbox, **args)`` (see :func:`tool`).

    What it returns becomes the observation: text as is, an :class:`Observation` as given, any
    other JSON value as its JSON text. An exception it raises is an observation too
    (``Error: <type>: <message>``, exit code 1), except :class:`ToolCallError` (a bad call).
    """

    def __init__(self, spec: ToolSpec, function: ToolFunction) -> None:
        self.spec = spec
        self.function = function
        self.__doc__ = function.__doc__

    def __call__(self, sandbox: ToolSandbox, **args: JSON) -> object:
        return self.function(sandbox, **args)

    def run(self, ctx: ToolContext, args: Mapping[str, JSON], timeout: float) -> Observation:
        args = {k: v for k, v in args.items() if k != "timeout"}  # the framework's, not the tool's
        try:
            inspect.signature(self.function).bind(None, **args)
        except TypeError as error:
            raise ToolCallError(
                f"tool {self.spec.name!r}: {error}",
                f"its arguments are those of {self.function.__qualname__}{_params(self)}",
            ) from None
        box = ToolSandbox(root=ctx.root, options=ctx.options, timeout=timeout, context=ctx)
        try:
            result = self.function(box, **args)
        except ToolCallError:
            raise
        except Exception as error:  # the tool's failure is what the agent observes
            log.warning("tool %r raised", self.spec.name, exc_info=True)
            return Observation(
                output=ctx.public(f"Error: {type(error).__name__}: {error}"), exit_code=1
            )
        if isinstance(result, Observation):
            text, truncated = cap_output(ctx.public(result.output), ctx.max_output_bytes)
            return replace(result, output=text, truncated=truncated or result.truncated)
        if not isinstance(result, str):
            result = json.dumps(result, sort_keys=True, default=str)
        text, truncated = cap_output(ctx.public(result), ctx.max_output_bytes)
        return Observation(output=text, truncated=truncated)


def _params(tool: PythonTool) -> str:
    """The signature without its ``sandbox`` parameter, e.g. ``(pattern, limit=10)``."""
    params = list(inspect.signature(tool.function).parameters.values())[1:]
    return str(inspect.Signature(params))


def tool(
    name: str | None = None,
    *,
    version: str = "1",
    volatile: Iterable[str] = ("timeout",),
    deterministic: bool = True,
    read_only: bool = False,
    pure: bool = False,
    description: str | None = None,
) -> Callable[[ToolFunction], PythonTool]:
    """Declare a Python function ``function(sandbox, **args)`` as a tool (a :class:`PythonTool`).

    The name defaults to the function's, the required arguments are its parameters without a
    default (after ``sandbox``), the description is its docstring's first line. ``volatile`` args
    are left out of the cache key (``timeout`` is taken by the framework, never passed on).

    >>> @tool(version="1", read_only=True)
    ... def count_lines(sandbox: ToolSandbox, path: str) -> str:
    ...     return str(len((sandbox.root / path).read_text().splitlines()))
    """

    def declare(function: ToolFunction) -> PythonTool:
        params = list(inspect.signature(function).parameters.values())
        if not params:
            raise ToolCallError(
                f"tool function {function.__qualname__} takes no parameters",
                "its first parameter receives the ToolSandbox: def f(sandbox, ...)",
            )
        required = tuple(
            p.name
            for p in params[1:]
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        doc = (function.__doc__ or "").strip().splitlines()
        spec = ToolSpec(
            name=name or function.__name__,
            version=version,
            volatile=frozenset(volatile),
            required=required,
            deterministic=deterministic,
            description=description if description is not None else (doc[0] if doc else ""),
            read_only=read_only,
            pure=pure,
        )
        return PythonTool(spec, function)

    return declare


def tool_entry(tool: LocalTool) -> str:
    """``module:qualname`` that finds ``tool`` again after importing its module elsewhere."""
    if isinstance(tool, PythonTool):
        return f"{tool.function.__module__}:{tool.function.__qualname__}"
    return f"{type(tool).__module__}:{type(tool).__qualname__}"


# --------------------------------------------------------------------------------------- sqlite


def split_sql(sql: str) -> list[str]:
    """Split a script into complete statements (quotes, comments and triggers respected)."""
    statements: list[str] = []
    start = 0
    for index, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start : index + 1]):
            statements.append(sql[start : index + 1].strip())
            start = index + 1
    if sql[start:].strip():
        statements.append(sql[start:].strip())
    return statements


def format_row(row: Iterable[object]) -> str:
    """One result row as its Python tuple repr, e.g. ``('Alice', 3)`` or ``(1,)``."""
    return repr(tuple(row))


def changed_message(count: int) -> str:
    return f"OK, {count} row{'' if count == 1 else 's'} changed"


_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "database_list",
        "collation_list",
        "function_list",
        "compile_options",
    }
)
_QUERY_PRAGMAS = frozenset(
    {
        "user_version",
        "application_id",
        "schema_version",
        "freelist_count",
        "page_count",
        "page_size",
        "encoding",
        "auto_vacuum",
        "integrity_check",
        "quick_check",
    }
)
"""Pragmas that only read when given no value (``PRAGMA user_version`` but not ``= 5``)."""
_PROCESS_PRAGMAS = frozenset(
    {"temp_store_directory", "data_store_directory", "soft_heap_limit", "hard_heap_limit"}
)
"""Pragmas that set something for the whole process: the local backend's tool runs in the
server, so a sandbox must not reach them."""
SIDECARS = ("-journal", "-wal", "-shm")
"""The files SQLite keeps beside a database; a read with any of them present may change them."""


class WriteDetector:
    """An SQLite authorizer that remembers whether anything could write, and refuses escapes.

    SQLite consults it for every action of every statement it prepares, so "no write action
    seen" shows the SQL asked for no change. Anything not known to be a read counts as a write
    (a pragma with a value, a transaction, a temp table), and so does a statement prepared
    without consulting it at all (nothing proves it read): conservative, never wrong.
    ``ATTACH`` (which ``VACUUM INTO`` uses too) and ``DETACH`` are refused: SQLite would open
    any path the SQL names, outside the sandbox. Plain ``VACUUM`` attaches ``''``, a private
    temporary database, which stays allowed. ``refused`` says why the last denial happened.
    """

    def __init__(self) -> None:
        self.wrote = False
        self.asked = False
        self.refused: str | None = None

    def statement(self) -> None:
        """Call before each statement; see :meth:`finish_statement`."""
        self.asked = False

    def finish_statement(self) -> None:
        if not self.asked:
            self.wrote = True

    def __call__(self, action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
        self.asked = True
        pragma = (arg1 or "").lower() if action == sqlite3.SQLITE_PRAGMA else None
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if pragma in _READ_PRAGMAS or (pragma in _QUERY_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
        self.wrote = True
        if action == sqlite3.SQLITE_ATTACH and arg1 != "":
            return self._refuse(
                "ATTACH is not allowed: the sqlite tool works on its one database file (the"
                " 'db' argument); ATTACH and VACUUM INTO would open or create files by any"
                " path. Use one call per database, and VACUUM without INTO."
            )
        if action == sqlite3.SQLITE_DETACH:
            return self._refuse("DETACH is not allowed: nothing can be attached (see ATTACH)")
        if pragma in _PROCESS_PRAGMAS:
            return self._refuse(
                f"PRAGMA {pragma} is not allowed: it is a setting of the whole process that"
                " runs the tool, not of this database"
            )
        return sqlite3.SQLITE_OK

    def _refuse(self, reason: str) -> int:
        self.refused = reason
        return sqlite3.SQLITE_DENY


def _unsafe_file(path: Path) -> str | None:
    """Why the database or a side file of it must not be opened; None when all are safe.

    A symbolic link would send the in-process SQLite anywhere (``db.sqlite-journal ->`` the
    store), a FIFO or device would block or misbehave, an extra hard link shares the inode
    with a file elsewhere. A check right before opening is sound because no sandbox process
    runs between calls: the bash tool kills each call's processes when it ends (an isolated
    call, its whole PID namespace), so nothing can swap a file between this check and SQLite's
    open. A process that outlived its call (``setsid`` escapes a mere process-group kill) could.
    """
    for name in (path.name, *(path.name + suffix for suffix in SIDECARS)):
        try:
            st = os.lstat(path.parent / name)
        except FileNotFoundError:
            continue
        problem = (
            "is a symbolic link"
            if stat.S_ISLNK(st.st_mode)
            else "is not a regular file"
            if not stat.S_ISREG(st.st_mode)
            else "has other hard links"
            if st.st_nlink > 1
            else None
        )
        if problem is not None:
            return (
                f"{name!r} {problem}; the sqlite tool opens only regular files with one link:"
                " replace it with a plain copy or remove it"
            )
    return None


FileState = tuple[tuple[int, ...] | None, ...]


def file_state(path: Path) -> FileState:
    """What the files of a database show to a later call: each one's existence and metadata,
    and the directory's (a file created and removed again moves its modification time)."""
    state: list[tuple[int, ...] | None] = []
    for name in (str(path), *(str(path) + suffix for suffix in SIDECARS), str(path.parent)):
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            state.append(None)
            continue
        owner = (st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid)
        state.append((*owner, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(state)


def quiet_database(state: FileState, path: Path) -> bool:
    """Whether a read cannot change the files: the database exists, in a rollback journal
    mode, with no side file. Otherwise opening it may roll back a hot journal or checkpoint
    and remove a WAL (WAL mode creates ``-wal`` and ``-shm`` even to read)."""
    if state[0] is None or any(side is not None for side in state[1:-1]):
        return False
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return len(header) < 20 or (header[18] == 1 and header[19] == 1)


class SqliteTool(LocalTool):
    """``sqlite``: SQL against a database file in the sandbox, in autocommit like the sqlite3 CLI.

    Output: one line per result row, each a Python tuple repr; a read with no rows gives ``""``;
    a call whose statements return no result set gives ``OK, N rows changed``. SQL errors give
    ``Error: <message>`` with exit code 1, and statements before the failing one stay applied.
    The observation is ``read_only`` when no statement could write, the database existed in a
    state a read cannot change (see :func:`quiet_database`) and its files are indeed unchanged.
    ``db`` is relative to the sandbox root (not to bash's cwd); its default is the root option
    ``sqlite_db``, else ``db.sqlite``. It must be a regular file (no link) inside the sandbox;
    ``ATTACH`` and ``VACUUM INTO`` are refused, extension loading stays off (the local backend
    runs this tool in the server process).
    """

    spec = ToolSpec(
        name="sqlite",
        version="2",  # 1 claimed read-only for reads that recovered a journal: not reused
        volatile=frozenset({"timeout"}),
        required=("sql",),
        description="Run SQL statement(s) on a SQLite database file in the sandbox.",
    )

    def written_files(self, ctx: ToolContext, args: Mapping[str, JSON]) -> list[Path]:
        """The only files a call can create or change: the database and its side files.

        A root server runs this tool in its own process, then hands exactly these to the sandbox
        uid (never the whole tree: that walk would cost O(files in the sandbox) per call).
        """
        path = self._database(ctx, args)
        if isinstance(path, str):
            return []
        return [path, *(path.parent / (path.name + suffix) for suffix in SIDECARS)]

    def _database(self, ctx: ToolContext, args: Mapping[str, JSON]) -> Path | str:
        """The database's path inside the sandbox, or why ``db`` names none."""
        sql, db = args["sql"], args.get("db", ctx.options.get("sqlite_db", DEFAULT_DB))
        if not isinstance(sql, str) or not isinstance(db, str) or not db:
            raise ToolCallError("sqlite: 'sql' and 'db' must be strings", "e.g. sql='SELECT 1'")
        given = ctx.root / db
        path = given.parent.resolve() / given.name
        root = ctx.root.resolve()
        if os.path.isabs(db) or given.name in ("", ".", "..") or not path.is_relative_to(root):
            return f"database path {db!r} is outside the sandbox; use a relative path"
        return path

    def run(self, ctx: ToolContext, args: Mapping[str, JSON], timeout: float) -> Observation:
        path = self._database(ctx, args)
        if isinstance(path, str):
            return _error(path)
        sql, db = str(args["sql"]), str(args.get("db", ctx.options.get("sqlite_db", DEFAULT_DB)))
        unsafe = _unsafe_file(path)
        if unsafe is not None:
            return _error(f"cannot open database {db!r}: {unsafe}")
        deadline = time.monotonic() + timeout
        before = file_state(path)
        quiet = quiet_database(before, path)
        try:
            conn = sqlite3.connect(
                path, timeout=min(timeout, 5.0), isolation_level=None, cached_statements=0
            )
        except sqlite3.Error as failure:
            return _error(f"cannot open database {db!r}: {failure}")
        writes = WriteDetector()
        conn.set_authorizer(writes)
        conn.text_factory = lambda raw: raw.decode("utf-8", errors="replace")
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        buffer = OutputBuffer(ctx.max_output_bytes)
        try:
            error = _execute(conn, sql, writes, buffer)
        finally:
            conn.close()
        unchanged = quiet and not writes.wrote and file_state(path) == before
        if error is None:
            text, truncated = buffer.finish(ctx)
            return Observation(
                output=text.removesuffix("\n"), truncated=truncated, read_only=unchanged
            )
        if time.monotonic() > deadline and "interrupted" in str(error):
            return timeout_observation(*buffer.finish(ctx), timeout)
        if writes.refused is not None:  # "not authorized", or "authorization denied" inside
            return _error(writes.refused, read_only=unchanged)
        if "file is not a database" in str(error):
            message = f"{db!r} is not a SQLite database (file is not a database)"
            return _error(message, read_only=unchanged)
        return _error(ctx.public(str(error)), read_only=unchanged)


def _execute(
    conn: sqlite3.Connection, sql: str, writes: WriteDetector, buffer: OutputBuffer
) -> sqlite3.Error | sqlite3.Warning | None:
    """Run ``sql`` statement by statement into ``buffer``; the error that stopped it, if any."""
    try:
        changes, had_rows = conn.total_changes, False
        for statement in split_sql(sql):
            writes.statement()
            cursor = conn.execute(statement)
            writes.finish_statement()
            if cursor.description is not None:
                had_rows = True
                for row in cursor:
                    buffer.add(format_row(row).encode("utf-8", errors="replace") + b"\n")
        if conn.in_transaction:
            conn.commit()
        if not had_rows:
            buffer.add(changed_message(conn.total_changes - changes).encode())
    except (sqlite3.Error, sqlite3.Warning) as error:
        return error
    return None


def _error(message: str, *, read_only: bool = False) -> Observation:
    return Observation(output=f"Error: {message}", exit_code=1, read_only=read_only)
