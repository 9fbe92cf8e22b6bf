"""Pure parts of the local tools: registry, SQL splitting, row and output formatting."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from sandbox import JSON, Observation, ToolCallError, ToolSpec
from sandbox._tools import (
    PUBLIC_ROOT,
    ROOT_PLACEHOLDER,
    LocalTool,
    OutputBuffer,
    ShellState,
    ToolContext,
    ToolRegistry,
    cap_text,
    changed_message,
    default_tools,
    format_row,
    initial_env,
    split_sql,
)


class Echo(LocalTool):
    spec = ToolSpec(name="echo", required=("text",))

    def run(self, ctx: ToolContext, args: Mapping[str, JSON], timeout: float) -> Observation:
        return Observation(output=str(args["text"]))


def context(root: Path = Path("/real/sbx/home"), max_bytes: int = 100) -> ToolContext:
    return ToolContext(
        root=root, private=root.parent / "state", shell=ShellState(), max_output_bytes=max_bytes
    )


def test_registry_lists_known_tools_for_unknown_name() -> None:
    registry = ToolRegistry(default_tools())
    with pytest.raises(ToolCallError, match=r"unknown tool 'python'.*known tools: bash, sqlite"):
        registry.get("python")


def test_registry_adds_and_replaces_by_name() -> None:
    registry = ToolRegistry([*default_tools(), Echo()])
    assert list(registry.specs()) == ["bash", "echo", "sqlite"]
    replacement = Echo()
    registry.register(replacement)
    assert registry.get("echo") is replacement
    assert registry.specs()["bash"].volatile == frozenset({"timeout"})


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1; SELECT 2;", ["SELECT 1;", "SELECT 2;"]),
        ("SELECT ';' ; SELECT 2", ["SELECT ';' ;", "SELECT 2"]),
        ("SELECT 1; -- done; really", ["SELECT 1;", "-- done; really"]),
        ("  ;  ", [";"]),
        ("", []),
        (
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END; SELECT 3",
            ["CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); END;", "SELECT 3"],
        ),
    ],
)
def test_split_sql(sql: str, expected: list[str]) -> None:
    assert split_sql(sql) == expected


def test_rows_are_python_tuple_reprs() -> None:
    assert format_row(("Alice", 3)) == "('Alice', 3)"
    assert format_row([1]) == "(1,)"
    assert format_row((None, 2.5, b"\x00")) == "(None, 2.5, b'\\x00')"
    assert changed_message(1) == "OK, 1 row changed"
    assert changed_message(3) == "OK, 3 rows changed"


def test_cap_text_reports_dropped_bytes_in_marker() -> None:
    text, truncated = cap_text("a" * 50, dropped=950, max_bytes=10)
    assert truncated and text.startswith("a" * 10)
    assert "[tvcache: output truncated to 10 of 1000 bytes]" in text
    assert cap_text("short", dropped=0, max_bytes=10) == ("short", False)


def test_output_buffer_bounds_memory_and_shows_public_root() -> None:
    ctx = context(max_bytes=100)
    buffer = OutputBuffer(100)
    buffer.add(f"{ctx.root}/x\n".encode())
    for _ in range(1000):
        buffer.add(b"y" * 1000)
    assert buffer.dropped > 0
    text, truncated = buffer.finish(ctx)
    assert truncated and text.startswith(f"{PUBLIC_ROOT}/x\n")
    assert len(text) < 300


def test_initial_env_is_fixed_and_quoted() -> None:
    env = initial_env({"GREETING": "hi there; rm -rf /"})
    assert f'export HOME="{ROOT_PLACEHOLDER}"' in env
    assert "export GREETING='hi there; rm -rf /'" in env
    assert "export PATH=/usr/local/sbin" in env


def test_shell_state_round_trips() -> None:
    state = ShellState(cwd="a/b", env='declare -x X="1"\n')
    assert ShellState.from_dict(state.to_dict()) == state
