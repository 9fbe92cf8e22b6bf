"""State-aware hits on the real local backend: SQLite's own read-only proof, directory
fingerprints, a misdeclared pure tool, shadow verification, and persistence of all of it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sandbox import Observation
from tvcache import Settings, open_engine
from tvcache._engine import Engine
from tvcache._settings import StateAwareness
from tvcache.cli import main


@pytest.fixture
def template(tmp_path: Path) -> Path:
    directory = tmp_path / "template"
    directory.mkdir()
    conn = sqlite3.connect(directory / "db.sqlite")
    conn.executescript(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); INSERT INTO t(v) VALUES (1), (2), (3);"
    )
    conn.commit()
    conn.close()
    return directory


SAME_TIMES = "touch -d @1700000000 . *"
"""Writes in another order leave their times in another order (``ls -t``, ``make`` see it):
setting them makes the two orders one state."""


def make(tmp_path: Path, state: StateAwareness) -> Engine:
    return open_engine(Settings(home=tmp_path / "home", state=state))


def test_sqlite_reads_in_any_order_hit_and_writes_still_decide(
    tmp_path: Path, template: Path
) -> None:
    engine = make(tmp_path, StateAwareness(read_only=True))
    with engine.session("sql", template=str(template)) as a:
        a.call("sqlite", sql="SELECT count(*) FROM t")
        a.call("sqlite", sql="SELECT sum(v) FROM t")
        a.call("sqlite", sql="UPDATE t SET v = v + 10")
        assert a.call("sqlite", sql="SELECT sum(v) FROM t").output == "(36,)"
    with engine.session("sql", template=str(template)) as b:
        assert b.call("sqlite", sql="SELECT sum(v) FROM t").hit  # order of reads differs
        assert b.call("sqlite", sql="SELECT count(*) FROM t").hit
        assert b.call("sqlite", sql="UPDATE t SET v = v + 10").hit
        assert b.call("sqlite", sql="SELECT sum(v) FROM t").output == "(36,)"
        b.call("sqlite", sql="DELETE FROM t WHERE id = 1")
        after = b.call("sqlite", sql="SELECT sum(v) FROM t")
    assert not after.hit and after.output == "(25,)"
    engine.close()


def test_commuting_bash_writes_merge_by_fingerprint(tmp_path: Path) -> None:
    engine = make(tmp_path, StateAwareness(fingerprint_tools=frozenset({"bash"})))
    with engine.session("files") as a:
        a.call("bash", command="echo 1 > a")
        a.call("bash", command="echo 2 > b && " + SAME_TIMES)
        a.call("bash", command="cat a b")
    with engine.session("files") as b:
        b.call("bash", command="echo 2 > b")
        b.call("bash", command="echo 1 > a && " + SAME_TIMES)
        merged = b.call("bash", command="cat a b")
        assert merged.hit and merged.output == "1\n2\n"
        assert b.call("bash", command="ls").output == "a\nb\n"  # the merged state is real
    assert engine.stats()["merged_nodes"] == 1
    assert engine.stats()["fingerprint_seconds"] > 0
    engine.close()


def test_equal_files_written_in_another_order_are_another_state(tmp_path: Path) -> None:
    """``make`` rebuilds when a source is newer than its target: a merge by content alone would
    serve "up to date" to a history whose fresh run rebuilds."""
    engine = make(tmp_path, StateAwareness(fingerprint_tools=frozenset({"bash"})))
    newer = "[ src -nt bin ] && echo rebuild || echo up-to-date"
    with engine.session("make") as a:
        a.call("bash", command="echo x > src")
        a.call("bash", command="sleep 1.1; echo x > bin")
        assert a.call("bash", command=newer).output == "up-to-date\n"
    with engine.session("make") as b:
        b.call("bash", command="echo x > bin")
        b.call("bash", command="sleep 1.1; echo x > src")
        served = b.call("bash", command=newer)
    assert not served.hit and served.output == "rebuild\n"
    assert engine.stats()["merged_nodes"] == 0
    engine.close()


def test_pure_tool_that_writes_is_caught(tmp_path: Path) -> None:
    engine = make(tmp_path, StateAwareness(pure_tools=frozenset({"bash"})))
    with engine.session("pure") as a:
        a.call("bash", command="echo hi")
        a.call("bash", command="echo x >> log; cat log")
    with engine.session("pure") as b:
        b.call("bash", command="mkdir d")  # caught as a write as well: stays at its position
        assert b.call("bash", command="echo hi").hit  # pure and verified: shared across states
        fresh = b.call("bash", command="echo x >> log; cat log")
    assert not fresh.hit and fresh.output == "x\n"
    assert engine.stats()["misdeclared_pure"] >= 2
    engine.close()


def test_shadow_verification_withdraws_a_wrong_observation(
    tmp_path: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make(tmp_path, StateAwareness(shadow_fraction=1.0))
    with engine.session("sql", template=str(template)) as a:
        served = a.call("sqlite", sql="SELECT max(v) FROM t")
    node = engine.graph.get(served.node_id)
    assert node is not None
    node.observation = Observation("(999,)", 0, 0.01)  # inject a corrupted entry
    with engine.session("sql", template=str(template)) as b:
        assert b.call("sqlite", sql="SELECT max(v) FROM t").output == "(999,)"
    assert engine.shadow is not None
    engine.shadow.drain()
    assert engine.stats()["shadow_mismatches"] == 1
    assert main(["--home", str(tmp_path / "home"), "stats", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["withdrawn"] == 1  # out of service until the next call there executes
    with engine.session("sql", template=str(template)) as c:
        again = c.call("sqlite", sql="SELECT max(v) FROM t")
    assert not again.hit and again.output == "(3,)"
    engine.close()
    assert engine.store is not None
    engine.store.close()
    reopened = make(tmp_path, StateAwareness())
    with reopened.session("sql", template=str(template)) as d:
        assert d.call("sqlite", sql="SELECT max(v) FROM t").output == "(3,)"
    reopened.close()


def test_read_only_and_merges_survive_a_restart(tmp_path: Path) -> None:
    state = StateAwareness(read_only=True, fingerprint_tools=frozenset({"bash"}))
    engine = make(tmp_path, state)
    with engine.session("files") as a:
        a.call("bash", command="touch x")
        a.call("bash", command="touch y && " + SAME_TIMES)
        a.call("bash", command="ls")
    with engine.session("files") as b:
        b.call("bash", command="touch y")
        b.call("bash", command="touch x && " + SAME_TIMES)
    engine.close()
    assert engine.store is not None
    engine.store.close()
    again = make(tmp_path, state)
    with again.session("files") as c:
        c.call("bash", command="touch y")
        c.call("bash", command="touch x && " + SAME_TIMES)
        listing = c.call("bash", command="ls")
    assert listing.hit and listing.output == "x\ny\n"
    again.close()
