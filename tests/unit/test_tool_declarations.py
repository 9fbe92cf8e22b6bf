"""Declaring tools: @tool, ToolSpec checks, the registry's refusals, ``--tools`` loading, and
what a Python tool's return values and failures become (no sandbox needed)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from sandbox._tools import ShellState, ToolContext, ToolRegistry
from tvcache import (
    Observation,
    PythonTool,
    ToolCallError,
    ToolSandbox,
    ToolSpec,
    TvcacheError,
    load_tools,
    tool,
)


def context(root: Path) -> ToolContext:
    return ToolContext(root=root, private=root.parent, shell=ShellState(), max_output_bytes=64)


@tool(version="3", volatile=("timeout", "nonce"), pure=True)
def add(sandbox: ToolSandbox, a: int, b: int = 0, nonce: str = "") -> object:
    """Add two numbers.

    More text that is not the description."""
    return {"sum": a + b, "root_seen": sandbox.root.name}


def test_tool_derives_the_spec_from_the_function() -> None:
    assert add.spec == ToolSpec(
        name="add",
        version="3",
        volatile=frozenset({"timeout", "nonce"}),
        required=("a",),
        description="Add two numbers.",
        pure=True,
    )
    assert (add.__doc__ or "").startswith("Add two numbers.")


def test_results_and_failures_become_observations(tmp_path: Path) -> None:
    ctx = context(tmp_path / "root")
    got = add.run(ctx, {"a": 2, "b": 3, "timeout": 5}, 5.0)  # timeout is not passed on
    assert json.loads(got.output) == {"sum": 5, "root_seen": "root"}

    @tool()
    def fails(sandbox: ToolSandbox, path: str) -> str:
        return (sandbox.root / path).read_text()

    failed = fails.run(ctx, {"path": "missing"}, 5.0)
    assert failed.exit_code == 1 and failed.output.startswith("Error: FileNotFoundError: ")
    assert str(tmp_path) not in failed.output and "/sandbox/missing" in failed.output

    @tool()
    def long(sandbox: ToolSandbox) -> Observation:
        return Observation(output="x" * 100, exit_code=3)

    capped = long.run(ctx, {}, 5.0)
    assert (
        capped.truncated and capped.exit_code == 3 and "[tvcache: output truncated" in capped.output
    )
    with pytest.raises(ToolCallError, match="tool 'add': missing a required argument: 'a'"):
        add.run(ctx, {"b": 1}, 5.0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "non-empty printable"),
        ({"name": "x", "version": ""}, "version must be a non-empty string"),
        ({"name": "x", "volatile": "timeout"}, "collections of names"),
        ({"name": "x", "required": "path"}, "collections of names"),
    ],
)
def test_bad_specs_say_what_to_do(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ToolCallError, match=message):
        ToolSpec(**fields)  # type: ignore[arg-type]


def test_registry_refuses_what_is_not_a_tool() -> None:
    with pytest.raises(ToolCallError, match="is not a tool"):
        ToolRegistry([lambda sandbox: "x"])  # type: ignore[list-item]
    with pytest.raises(ToolCallError, match="takes no parameters"):
        tool()(lambda: "x")


@pytest.fixture
def tool_module() -> object:
    module = types.ModuleType("my_tools_for_test")
    module.add = add  # type: ignore[attr-defined]
    module.make = lambda: [add, PythonTool(ToolSpec("other"), lambda sandbox: "o")]  # type: ignore[attr-defined]
    module.wrong = lambda: ["not a tool"]  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


@pytest.mark.usefixtures("tool_module")
def test_load_tools_takes_tools_classes_and_factories() -> None:
    assert load_tools(["my_tools_for_test:add"]) == [add]
    assert [t.spec.name for t in load_tools(["my_tools_for_test:make"])] == ["add", "other"]
    with pytest.raises(TvcacheError, match=r"not of the form package\.module:factory"):
        load_tools(["my_tools_for_test"])
    with pytest.raises(TvcacheError, match="cannot load it"):
        load_tools(["my_tools_for_test:nothing"])
    with pytest.raises(TvcacheError, match="cannot load it"):
        load_tools(["no_such_module_anywhere:x"])
    with pytest.raises(TvcacheError, match="which is not a tool"):
        load_tools(["my_tools_for_test:wrong"])
