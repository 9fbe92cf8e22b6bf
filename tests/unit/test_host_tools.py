"""Host tools (a ``spec`` and ``run(args)``, run in the engine's process) through ``--tools``:
loaded, served by ``open_engine`` beside the sandbox tools, and given to the benchmarks."""

from __future__ import annotations

import argparse
import os
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tvcache import Observation, Settings, StateAwareness, ToolSpec, load_tools, open_engine
from tvcache._cli_service import tool_flags
from tvcache.bench.sql import make_workload


class Echo:
    """A host tool: it answers in this process and counts its runs."""

    spec = ToolSpec("echo", version="1", required=("text",))

    def __init__(self) -> None:
        self.pids: list[int] = []

    def run(self, args: Mapping[str, Any]) -> Observation:
        self.pids.append(os.getpid())
        return Observation(output=f"echo {args['text']}")


@pytest.fixture
def host_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("host_tools_for_test")
    module.make = lambda: [Echo()]  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


@pytest.mark.usefixtures("host_module")
def test_load_tools_takes_host_tools_and_open_engine_runs_them_here(tmp_path: Path) -> None:
    (echo,) = load_tools(["host_tools_for_test:make"])
    assert isinstance(echo, Echo)
    engine = open_engine(Settings(home=tmp_path), tools=[echo], persist=False)
    try:
        assert {"echo", "bash", "sqlite"} <= set(engine.backend.tool_specs())
        hits = []
        for _ in range(2):
            with engine.session("t") as session:
                result = session.call("echo", text="a")
                assert result.output == "echo a"
                hits.append(result.hit)
        assert hits == [False, True]
        assert echo.pids == [os.getpid()]  # ran once, in this process; the second was a hit
        with engine.session("t") as session:
            assert session.call("bash", command="echo $((1 + 2))").output == "3\n"
    finally:
        engine.close()


@pytest.mark.usefixtures("host_module")
def test_bench_sql_modes_get_the_tools_and_a_server_the_flags(tmp_path: Path) -> None:
    args = argparse.Namespace(quick=True, group_size=2, seed=0, tools=["host_tools_for_test:make"])
    work = make_workload(args, tmp_path)
    assert "echo" in work.backend(tmp_path / "home").tool_specs()
    assert work.tool_flags == ("--tools", "host_tools_for_test:make")
    assert tool_flags(argparse.Namespace(tools=[])) == []


class Notes:
    """Host tools that keep state outside the sandbox (a file on the host): against their
    contract, which nothing can check — so the engine must not trust a fingerprint beside them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("")
        outer = self

        class Append:
            spec = ToolSpec("append", version="1", required=("text",))

            def run(self, args: Mapping[str, Any]) -> Observation:
                with outer.path.open("a") as handle:
                    handle.write(str(args["text"]))
                return Observation(output="ok")

        class Read:
            spec = ToolSpec("read", version="1")

            def run(self, args: Mapping[str, Any]) -> Observation:
                return Observation(output=outer.path.read_text())

        self.tools = [Append(), Read()]


def test_a_fingerprint_never_merges_past_state_a_host_tool_may_hold(tmp_path: Path) -> None:
    """The sandbox's fingerprint cannot see a host tool's state: after ``append`` the sandbox
    looks unchanged, and a merge would serve the ``read`` of a history that never appended."""
    notes = Notes(tmp_path / "notes.txt")
    state = StateAwareness(fingerprint_tools=frozenset({"*"}))
    engine = open_engine(Settings(home=tmp_path / "home", state=state), tools=notes.tools)
    try:
        with engine.session("t") as session:
            assert session.call("read").output == ""
        with engine.session("t") as session:
            session.call("append", text="x")
            assert session.call("read").output == notes.path.read_text() == "x"
    finally:
        engine.close()
