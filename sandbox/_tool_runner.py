"""How a Python tool runs in a sandbox: its module and the tool code, shipped as files, and a
small runner that ``python3`` executes where the sandbox's commands run (inside the container
for Docker, inside bubblewrap for the local backend), so the tool sees only the sandbox."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from sandbox import _tools, _types
from sandbox._tools import INNER_STATE as MOUNT
from sandbox._types import JSON, ToolCallError
from snapshots import _errors, _handle

# -------------------------------------------------------------------------------- Python tools

TOOL_REQUEST = "tool.json"
TOOL_GRACE = 10.0
TOOL_COMMAND = f"exec python3 -I {MOUNT}/py/tvcache_tool.py"
"""Runs in a subshell (mode ``sub``), so the session shell's state is untouched."""

_TOOL_SHIM = f'''"""One call of a Python tool, in the container, with the host's own tool code."""
import contextlib
import dataclasses
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, "{MOUNT}/py")
from sandbox._tools import TIMEOUT_EXIT_CODE, TIMEOUT_NOTE, LocalTool, PythonTool  # noqa: E402
from sandbox._tools import ShellState, ToolContext  # noqa: E402
from sandbox._types import ToolCallError, ToolSpec  # noqa: E402


class Context(ToolContext):
    def public(self, text):
        return text  # container paths are the same in every fork: nothing to hide

    def exec(self, command, timeout):
        try:
            done = subprocess.run(
                ["bash", "-c", command], cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
            )
        except subprocess.TimeoutExpired as expired:
            said = (expired.output or b"").decode("utf-8", "replace")
            return TIMEOUT_EXIT_CODE, said + TIMEOUT_NOTE.format(seconds=timeout)
        return done.returncode, done.stdout.decode("utf-8", "replace")


def load(entry):
    module, _, qualname = entry.partition(":")
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if isinstance(found, LocalTool):
        return found
    if isinstance(found, type):
        return found()
    return PythonTool(ToolSpec(name=qualname), found)


request = json.loads(Path("{MOUNT}/{TOOL_REQUEST}").read_text())
ctx = Context(
    root=Path(request["root"]),
    private=Path("{MOUNT}"),
    shell=ShellState(),
    max_output_bytes=request["max_output_bytes"],
    options=request["options"],
)
with contextlib.redirect_stdout(io.StringIO()):  # what the tool prints is not the reply
    try:
        observation = load(request["entry"]).run(ctx, request["args"], request["timeout"])
    except ToolCallError as error:
        reply = {{"tool_call_error": [error.message, error.hint]}}
    else:
        reply = dataclasses.asdict(observation)
if request.get("reply"):  # a file: the output of the command that ran this is capped
    Path(request["reply"]).write_text(json.dumps(reply))
else:
    print("\\n" + json.dumps(reply))
'''

_TOOL_NAMES = (
    b"from sandbox._tools import LocalTool, PythonTool, ShellTool, ToolSandbox, tool\n"
    b"from sandbox._types import Observation, ToolCallError, ToolSpec\n"
)
"""``sandbox/__init__`` and ``tvcache/__init__`` in the container: a tool's module may import
the tool names from either, as it does on the host."""


def helper_files(modules: Iterable[str] = ()) -> dict[str, bytes]:
    """The tool runner, the host modules it reuses and the tools' ``modules``, as files.

    ``snapshots/__init__`` is replaced by the two imports ``sandbox._types`` needs, so that
    nothing host-only (psutil, the docker SDK) is imported in the container. A tool module is
    shipped as its one source file, its parent packages as empty ones.
    """
    files = {
        "py/tvcache_tool.py": _TOOL_SHIM.encode(),
        "py/sandbox/__init__.py": _TOOL_NAMES,
        "py/tvcache/__init__.py": _TOOL_NAMES,
    }
    for module in (_tools, _types, _errors, _handle):
        assert module.__file__ is not None
        name = module.__name__.replace(".", "/")
        files[f"py/{name}.py"] = Path(module.__file__).read_bytes()
    files["py/snapshots/__init__.py"] = (
        b"from snapshots._errors import SnapshotError, TvcacheError\n"
        b"from snapshots._handle import SnapshotHandle\n"
    )
    for name in modules:
        path = module_file(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):
            files.setdefault("py/" + "/".join(parts[:depth]) + "/__init__.py", b"")
        target = "/".join(parts) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        files["py/" + target] = path.read_bytes()
    return files


def module_file(name: str) -> Path:
    """The source file of the imported module ``name``, which a Python tool lives in."""
    module = sys.modules.get(name)
    source = getattr(module, "__file__", None)
    if name == "__main__" or module is None or source is None or not source.endswith(".py"):
        raise ToolCallError(
            f"module {name!r} of a Python tool cannot be shipped into a container: it is "
            + ("the script being run" if name == "__main__" else "not an imported .py file"),
            "define the tool in an importable module (a .py file) and import it from there",
        )
    return Path(source)


_REPLY = "reply.json"


def run_isolated(
    ctx: _tools.ToolContext, tool: _tools.LocalTool, args: Mapping[str, JSON], timeout: float
) -> _types.Observation:
    """``tool`` run by python3 inside the local sandbox's isolation, as Docker runs it in the
    container: it sees ``/sandbox`` and nothing of the host (a link the model planted leads
    nowhere). The files are written for the call and removed after it, so no snapshot holds
    them."""
    files = _files(tuple(shipped_modules([tool])))
    out = ctx.private / "out"
    request = {
        "entry": _tools.tool_entry(tool),
        "args": dict(args),
        "root": _tools.INNER_ROOT,
        "max_output_bytes": ctx.max_output_bytes,
        "options": dict(ctx.options),
        "timeout": timeout,
        "reply": f"{MOUNT}/out/{_REPLY}",
    }
    files[TOOL_REQUEST] = json.dumps(request).encode()
    try:
        for name, data in files.items():
            (ctx.private / name).parent.mkdir(parents=True, exist_ok=True)
            (ctx.private / name).write_bytes(data)
        _tools._remove(out / _REPLY)
        command = f"python3 -I {MOUNT}/py/tvcache_tool.py"
        ran = _tools.BashTool().run(ctx, {"command": command}, timeout + TOOL_GRACE)
        if ran.timed_out:
            return _tools.timeout_observation("", False, timeout)
        raw = _tools._read_regular(out / _REPLY)
    finally:
        _tools._remove(ctx.private / "py")
        (ctx.private / TOOL_REQUEST).unlink(missing_ok=True)
        _tools._remove(out / _REPLY)
    if raw is None:
        raise ToolCallError(
            f"tool {tool.spec.name!r} did not run in the sandbox: {ran.output[-2000:]}",
            "its module may import only the standard library and tool names from tvcache",
        )
    data = json.loads(raw)
    if "tool_call_error" in data:
        raise ToolCallError(*data["tool_call_error"])
    return _types.Observation(**data)


@functools.cache
def _cached_files(modules: tuple[str, ...]) -> Mapping[str, bytes]:
    return helper_files(modules)


def _files(modules: tuple[str, ...]) -> dict[str, bytes]:
    return dict(_cached_files(modules))


def shipped_modules(tools: Iterable[_tools.LocalTool]) -> list[str]:
    """The modules of ``tools`` that run by python3 in a sandbox and so must be shipped there;
    raises, with a hint, for a module that cannot be (defined in ``__main__``, not a file)."""
    python = [t for t in tools if not isinstance(t, _tools.ShellTool)]
    modules = sorted({_tools.tool_entry(t).partition(":")[0] for t in python})
    modules = [m for m in modules if not m.startswith("sandbox.")]
    for name in modules:
        module_file(name)
    return modules
