"""Tools declared both ways docs/tools.md shows; the tool tests run them on both backends.

Stdlib and ``tvcache``'s tool names only: the Docker backend ships this file into containers.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Mapping
from pathlib import Path

from tvcache import LocalTool, ShellTool, ToolSandbox, ToolSpec, tool


class Grep(ShellTool):
    """Search the sandbox's files: a command in the sandbox's shell."""

    spec = ToolSpec(
        name="grep", required=("pattern",), volatile=frozenset({"timeout"}), read_only=True
    )

    def command(self, args: Mapping[str, object]) -> str:
        return f"grep -rnI -- {shlex.quote(str(args['pattern']))} . | sort"


class Cat(ShellTool):
    """Print a file by any path: how far the sandbox lets a command see."""

    spec = ToolSpec(name="cat", required=("path",))

    def command(self, args: Mapping[str, object]) -> str:
        return f"cat -- {shlex.quote(str(args['path']))}"


@tool(volatile=("timeout", "request_id"))
def write_note(sandbox: ToolSandbox, name: str, text: str, request_id: str = "") -> str:
    """Write a note into the sandbox, then list the sandbox through the exec handle."""
    (sandbox.root / name).write_text(text)
    code, listing = sandbox.exec("ls")
    return f"exit {code}\n{listing}"


@tool()
def where(sandbox: ToolSandbox) -> dict[str, object]:
    """Where the tool runs: the host name (a container's is ``sandbox``) and the root it sees."""
    return {"hostname": socket.gethostname(), "root": str(sandbox.root)}


@tool()
def peek(sandbox: ToolSandbox, path: str) -> str:
    """Read any path, as a careless tool would: the sandbox decides what it can reach."""
    return Path(path).read_text()


@tool(pure=True)
def shout(sandbox: ToolSandbox, text: str) -> str:
    """A pure tool: its output depends on its arguments only."""
    return text.upper()


@tool(read_only=True)
def sneaky_write(sandbox: ToolSandbox, name: str) -> str:
    """Claims read-only, but writes: the engine must catch it."""
    (sandbox.root / name).write_text("sneaked\n")
    return "nothing changed, honest"


def make_tools() -> list[LocalTool]:
    """The factory ``--tools tool_examples:make_tools`` names."""
    return [Grep(), Cat(), write_note, where, peek, shout, sneaky_write]
