"""Fingerprints only where they pay: a state the tool proved unchanged is not measured again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tvcache import Settings, open_engine
from tvcache._settings import StateAwareness

FINGERPRINT = StateAwareness(read_only=True, fingerprint_tools=frozenset({"sqlite"}))


def test_a_proven_read_costs_no_fingerprint_and_writes_still_merge(tmp_path: Path) -> None:
    template = tmp_path / "template"
    template.mkdir()
    with sqlite3.connect(template / "db.sqlite") as conn:
        conn.executescript(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); INSERT INTO t(v) VALUES (1);"
        )
    engine = open_engine(Settings(home=tmp_path / "home", state=FINGERPRINT))
    with engine.session("sql", template=str(template)) as a:
        a.call("sqlite", sql="UPDATE t SET v = 2")
        measured = engine.stats().fingerprints
        for n in range(3):
            read = a.call("sqlite", sql=f"SELECT v + {n} FROM t")
            assert not read.hit and read.output == f"({2 + n},)"
        assert engine.stats().fingerprints == measured  # before and after are known: the proof
        a.call("sqlite", sql="UPDATE t SET v = 3")
        assert engine.stats().fingerprints == measured + 1  # a write is measured
    with engine.session("sql", template=str(template)) as b:  # the same state by another path
        b.call("sqlite", sql="UPDATE t SET v = 3")
        assert b.call("sqlite", sql="SELECT v + 0 FROM t").output == "(3,)"
    assert engine.stats().read_only_nodes == 4
    engine.close()
