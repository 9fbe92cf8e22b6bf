"""A tool a user declares runs on the local backend like ``bash``: isolated, keyed by its
version and non-volatile arguments, and its claims checked rather than trusted."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tool_examples import Cat, Grep, make_tools, sneaky_write, write_note

from tvcache import PythonTool, Settings, StateAwareness, ToolCallError, ToolSpec, open_engine
from tvcache._engine import Engine


@pytest.fixture
def template(tmp_path: Path) -> Path:
    directory = tmp_path / "template"
    directory.mkdir()
    (directory / "a.txt").write_text("needle\nhay\n")
    return directory


def engine_at(home: Path, **kwargs: object) -> Engine:
    return open_engine(Settings(home=home), tools=make_tools(), **kwargs)  # type: ignore[arg-type]


def test_a_shell_tool_runs_isolated_like_bash(tmp_path: Path, template: Path) -> None:
    home = tmp_path / "home"
    engine = engine_at(home)
    assert engine.backend.isolated  # type: ignore[attr-defined]
    with engine.session("t", template=str(template)) as session:
        assert session.call("grep", pattern="needle").output == "./a.txt:1:needle\n"
        assert session.call("cat", path="/sandbox/a.txt").output == "needle\nhay\n"
        store = session.call("cat", path=str(home / "cache.db"))
        assert store.observation.exit_code != 0 and "No such file" in store.output
        session.call("bash", command="mkdir sub && cd sub && echo needle > b.txt")
        assert session.call("grep", pattern="needle").output == "./b.txt:1:needle\n"  # shell cwd
    with engine.session("t", template=str(template)) as again:
        assert again.call("grep", pattern="needle").hit
    engine.close()


def test_a_python_tool_sees_the_root_and_execs_inside(tmp_path: Path, template: Path) -> None:
    engine = engine_at(tmp_path / "home")
    with engine.session("t", template=str(template)) as first:
        wrote = first.call("write_note", name="n.txt", text="hi", request_id="r1")
        assert not wrote.hit and wrote.output == "exit 0\na.txt\nn.txt\n"
        assert first.call("bash", command="cat n.txt").output == "hi"
        where = json.loads(first.call("where").output)  # inside the isolation, as bash
        assert where == {"hostname": "sandbox", "root": "/sandbox"}
    with engine.session("t", template=str(template)) as second:  # request_id is volatile
        assert second.call("write_note", name="n.txt", text="hi", request_id="r2").hit
        assert not second.call("write_note", name="n.txt", text="ho", request_id="r2").hit
    engine.close()
    bumped = PythonTool(replace(write_note.spec, version="2"), write_note.function)
    newer = open_engine(Settings(home=tmp_path / "home"), tools=[bumped])
    with newer.session("t", template=str(template)) as third:  # the version is in the key
        assert not third.call("write_note", name="n.txt", text="hi", request_id="r1").hit
    newer.close()


def test_a_python_tool_cannot_reach_the_host(tmp_path: Path, template: Path) -> None:
    home = tmp_path / "home"
    engine = engine_at(home)
    store = home / "cache.db"
    before = store.read_bytes()
    with engine.session("t", template=str(template)) as session:
        assert session.call("peek", path="/sandbox/a.txt").output == "needle\nhay\n"
        peeked = session.call("peek", path=str(store))
        assert peeked.observation.exit_code == 1 and "FileNotFoundError" in peeked.output
        session.call("bash", command=f"ln -s {store} link")  # a link the model planted
        wrote = session.call("write_note", name="link", text="overwritten")
        assert wrote.observation.exit_code == 1 and "FileNotFoundError" in wrote.output
    engine.close()
    assert store.read_bytes()[:16] == before[:16] == b"SQLite format 3\x00"
    # the call (and its text) is recorded inside the store, which close() checkpointed into
    # the file: what must hold is that the file is still a sound database, not the note
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_bad_calls_of_a_python_tool_say_what_is_wrong(tmp_path: Path, template: Path) -> None:
    engine = engine_at(tmp_path / "home")
    with engine.session("t", template=str(template)) as session:
        with pytest.raises(ToolCallError, match="needs argument"):
            session.call("write_note", name="x")
        with pytest.raises(ToolCallError, match=r"unexpected keyword argument 'colour'"):
            session.call("write_note", name="x", text="y", colour="red")
        failed = session.call("cat", path="missing")
        assert failed.observation.exit_code == 1 and "No such file" in failed.output
    engine.close()


def test_a_read_only_claim_is_checked_not_trusted(tmp_path: Path, template: Path) -> None:
    engine = engine_at(tmp_path / "home")
    with engine.session("t", template=str(template)) as a:
        a.call("grep", pattern="hay")  # true claim: the state did not move
        a.call("sneaky_write", name="x")  # false claim: it wrote x
        assert "x" in a.call("bash", command="ls").output.split()
    with engine.session("t", template=str(template)) as b:
        listing = b.call("bash", command="ls")
        assert listing.output.split() == ["a.txt"]  # never the listing after sneaky_write
    with engine.session("t", template=str(template)) as c:
        assert c.call("sneaky_write", name="x").hit  # same history, same state: a hit
        after = c.call("bash", command="ls")
        assert after.hit and "x" in after.output.split()
    with engine.session("t", template=str(template)) as d:
        d.call("grep", pattern="needle")  # a true claim, verified: the state is the root's
        assert d.call("bash", command="ls").hit  # so b's listing at the root serves it
    engine.close()


def test_a_pure_claim_shares_across_states_only_when_checked(
    tmp_path: Path, template: Path
) -> None:
    liar = PythonTool(
        replace(sneaky_write.spec, name="sneaky_pure", read_only=False, pure=True),
        sneaky_write.function,
    )
    engine = open_engine(Settings(home=tmp_path / "home"), tools=[*make_tools(), liar])
    with engine.session("t", template=str(template)) as a:
        a.call("bash", command="echo x > f")
        assert not a.call("shout", text="hi").hit
        a.call("sneaky_pure", name="y")  # claims pure, but wrote: stays at its state
    with engine.session("t", template=str(template)) as b:
        shared = b.call("shout", text="hi")  # pure and verified: served in every state
        assert shared.hit and shared.output == "HI"
        assert not b.call("sneaky_pure", name="y").hit
        assert "y" in b.call("bash", command="ls").output.split()
    engine.close()


CALLS = st.lists(
    st.one_of(
        st.builds(lambda p: ("grep", {"pattern": p}), st.sampled_from(["needle", "hay", "x"])),
        st.builds(lambda n: ("sneaky_write", {"name": n}), st.sampled_from(["x", "y"])),
        st.builds(lambda n: ("write_note", {"name": n, "text": "x"}), st.sampled_from(["x", "z"])),
        st.just(("bash", {"command": "ls; cat x 2>&1"})),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories=st.lists(CALLS, min_size=2, max_size=3))
def test_every_hit_of_user_tools_equals_a_fresh_run(
    tmp_path_factory: pytest.TempPathFactory, histories: list[list[tuple[str, dict[str, str]]]]
) -> None:
    """The guarantee with user tools and their claims: whatever the histories, every
    observation served equals what a fresh sandbox returns for the same history."""
    base = tmp_path_factory.mktemp("prop")
    template = base / "template"
    template.mkdir()
    (template / "a.txt").write_text("needle\nhay\n")
    cached = open_engine(
        Settings(home=base / "cached", state=StateAwareness(read_only=True)), tools=make_tools()
    )
    fresh = open_engine(Settings(home=base / "fresh"), tools=make_tools(), persist=False)
    try:
        for index, history in enumerate(histories):
            with (
                cached.session("p", template=str(template)) as session,
                fresh.session(f"fresh-{index}", template=str(template)) as truth,
            ):
                for tool, args in history:
                    assert session.call(tool, **args).output == truth.call(tool, **args).output
    finally:
        cached.close()
        fresh.close()


def test_shell_tool_commands_are_checked() -> None:
    class Broken(Cat):
        def command(self, args: object) -> str:  # type: ignore[override]
            return "echo \0"

    with pytest.raises(ToolCallError, match="without NUL"):
        Broken().shell_command({"path": "x"})
    assert Grep().shell_command({"pattern": "a'b"}) == "grep -rnI -- 'a'\"'\"'b' . | sort"
    assert sneaky_write.spec.read_only and sneaky_write.spec.required == ("name",)


def test_a_python_tool_defined_in_a_script_is_refused_with_a_hint(tmp_path: Path) -> None:
    def local_only(sandbox: object) -> str:
        return "never shipped"

    local_only.__module__ = "__main__"
    with pytest.raises(ToolCallError, match="importable module"):
        open_engine(Settings(home=tmp_path), tools=[PythonTool(ToolSpec("x"), local_only)])
