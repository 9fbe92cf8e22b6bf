"""The SQL benchmark workload: translation, packaged data, and the two group constructions."""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tvcache
from tvcache.bench import _sql_workload as w
from tvcache.data import _spider

PACKAGE_DIR = Path(tvcache.__file__).resolve().parent


@pytest.fixture(scope="module")
def groups() -> list[w.SqlTaskGroup]:
    return w.build_groups()


def _run(conn: sqlite3.Connection, sql: str) -> tuple[bool, str]:
    try:
        return True, repr(conn.execute(sql).fetchall())
    except sqlite3.Error as exc:
        return False, f"error: {exc}"


# -- translation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("SHOW TABLES", "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"),
        ("show tables;", "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"),
        ("execute[SHOW TABLES]", "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"),
        ("DESC people", "PRAGMA table_info(people)"),
        ("describe `people`;", "PRAGMA table_info(people)"),
        ("DESC poker_player.people", "PRAGMA table_info(people)"),
        ("SHOW COLUMNS FROM people", "PRAGMA table_info(people)"),
        ("SHOW DATABASES", "PRAGMA database_list"),
        ("execute[SELECT Name FROM people;]", "SELECT Name FROM people"),
        ("SELECT Name FROM people;;", "SELECT Name FROM people"),
        ("SET sql_mode=''; SELECT 1;", "SELECT 1"),
        ("SELECT nonsense FROM nowhere", "SELECT nonsense FROM nowhere"),
    ],
)
def test_translate_examples(action: str, expected: str) -> None:
    assert w.translate_mysql(action) == expected


@pytest.mark.parametrize(
    "action",
    [
        "submit",
        "submit;",
        "USE world_1;",
        "SET sql_mode = ''",
        "Can you provide the schema of the tables available?",
        "execute[SELECT name FROM people",  # unterminated wrapper: InterCode rejected it too
        "",
    ],
)
def test_translate_non_sql_is_none(action: str) -> None:
    assert w.translate_mysql(action) is None


def test_translated_introspection_answers_on_sqlite() -> None:
    conn = w.open_database("poker_player")

    def rows(action: str) -> list[tuple[object, ...]]:
        sql = w.translate_mysql(action, schema="poker_player")
        assert sql is not None
        return conn.execute(sql).fetchall()

    assert rows("SHOW TABLES") == [("people",), ("poker_player",)]
    assert [r[1] for r in rows("DESC people")][:2] == ["People_ID", "Nationality"]
    tables = rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'poker_player'"
    )
    assert sorted(tables) == [("people",), ("poker_player",)]
    assert rows("SELECT * FROM information_schema.tables WHERE table_schema = 'other_db'") == []
    columns = rows(
        "SELECT column_name, column_key FROM INFORMATION_SCHEMA.COLUMNS"
        " WHERE table_schema = DATABASE() AND table_name = 'people' ORDER BY ordinal_position"
    )
    assert columns[0] == ("People_ID", "PRI")
    assert len(columns) == 5


# -- packaged data ---------------------------------------------------------------------------------


def test_extract_database_has_expected_tables(tmp_path: Path) -> None:
    assert len(w.list_databases()) == 20
    path = w.extract_database("world_1", tmp_path / "dbs")
    assert path == tmp_path / "dbs" / "world_1.sqlite"
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {"city", "country", "countrylanguage"}
    assert conn.execute("SELECT COUNT(*) FROM country").fetchone() == (239,)


def test_extract_database_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown Spider database 'nope'"):
        w.extract_database("nope", tmp_path)


@pytest.fixture
def opened_files() -> Iterator[list[str]]:
    """Record every file the interpreter opens while the test runs, caches cleared first."""
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if active[0] and event == "open" and isinstance(args[0], (str, Path)):
            seen.append(str(args[0]))

    for cached in (_spider._members, _spider._tasks, _spider._traces, w._edit_targets):
        cached.cache_clear()
    sys.addaudithook(hook)  # hooks cannot be removed; this one goes quiet after the test
    yield seen
    active[0] = False


def test_packaged_data_is_self_contained(tmp_path: Path, opened_files: list[str]) -> None:
    assert w.DATA_ARCHIVE.is_relative_to(PACKAGE_DIR)
    w.build_groups(recorded_tasks=5, edit_tasks=5)
    w.extract_database("singer", tmp_path)
    data_files = [
        Path(p).resolve()
        for p in opened_files
        if not p.endswith((".py", ".pyc", ".so")) and Path(p).suffix
    ]
    assert Path(w.DATA_ARCHIVE) in data_files
    outside = [
        p for p in data_files if not (p.is_relative_to(PACKAGE_DIR) or p.is_relative_to(tmp_path))
    ]
    assert outside == []


# -- groups ----------------------------------------------------------------------------------------


def test_build_groups_defaults_fast_and_sized() -> None:
    for cached in (_spider._members, _spider._tasks, _spider._traces, w._edit_targets):
        cached.cache_clear()
    start = time.perf_counter()
    built = w.build_groups()
    assert time.perf_counter() - start < 2.0
    kinds = [g.kind for g in built]
    assert kinds.count("recorded") == 60
    assert kinds.count("edit") == 20
    assert kinds.count("raw") == 40
    assert all(len(g.rollouts) == 8 for g in built if g.kind != "raw")
    assert len({g.task_id for g in built}) == len(built)
    assert len({g.db for g in built if g.kind == "recorded"}) == 20


def test_build_groups_deterministic_per_seed() -> None:
    a = w.build_groups(group_size=4, recorded_tasks=12, edit_tasks=6, seed=7)
    b = w.build_groups(group_size=4, recorded_tasks=12, edit_tasks=6, seed=7)
    c = w.build_groups(group_size=4, recorded_tasks=12, edit_tasks=6, seed=8)
    assert a == b
    assert a != c
    assert [g.kind for g in a].count("edit") == 6


def test_recorded_rollouts_use_real_actions_and_share_prefixes(
    groups: list[w.SqlTaskGroup],
) -> None:
    recorded = [g for g in groups if g.kind == "recorded"]
    sharing = differing = 0
    for group in recorded:
        real = {
            a for t in w._recorded_trajectories(group.task_id.split(":")[1], group.db) for a in t
        }
        assert all(a in real for r in group.rollouts for a in r.actions)
        assert all(r.actions for r in group.rollouts)
        firsts = [r.actions[0] for r in group.rollouts]
        sharing += len(set(firsts)) < len(firsts)  # some members share a nonempty prefix
        differing += len({r.actions for r in group.rollouts}) > 1
    assert sharing >= 0.9 * len(recorded)
    assert differing >= 0.9 * len(recorded)


def test_edit_writes_succeed_and_planned_failures_fail(
    groups: list[w.SqlTaskGroup], tmp_path: Path
) -> None:
    edits = [g for g in groups if g.kind == "edit"]
    assert any(r.expected_errors for g in edits for r in g.rollouts)
    writes = 0
    for gi, group in enumerate(edits):
        for ri, rollout in enumerate(group.rollouts):
            path = w.extract_database(group.db, tmp_path / f"{gi}-{ri}")
            conn = sqlite3.connect(path)
            for i, action in enumerate(rollout.actions):
                ok, result = _run(conn, action)
                assert ok == (i not in rollout.expected_errors), (group.task_id, action, result)
                writes += action.split()[0] in {"UPDATE", "DELETE", "INSERT", "CREATE"}
            conn.close()
    assert writes > len(edits) * 8


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("group_size", [2, 8])
def test_history_decides_what_reads_return(seed: int, group_size: int) -> None:
    """The same verification read answers differently after different histories in every group,
    so a cache keyed by the call alone serves wrong observations."""
    edits = w.build_groups(group_size=group_size, recorded_tasks=0, raw_tasks=0, seed=seed)
    assert edits and all(g.kind == "edit" for g in edits)
    for group in edits:
        answers: dict[str, set[str]] = {}
        blind_cache: dict[str, str] = {}
        wrong = 0
        for rollout in group.rollouts:
            conn = w.open_database(group.db)
            for action in rollout.actions:
                _, result = _run(conn, action)
                answers.setdefault(action, set()).add(result)
                wrong += blind_cache.setdefault(action, result) != result
        count = next(a for a in answers if a.startswith("SELECT COUNT(*)"))
        total = next(a for a in answers if a.startswith("SELECT SUM("))
        assert len(answers[count] | answers[total]) > 2, group.task_id
        assert len(answers[count]) > 1 or len(answers[total]) > 1, group.task_id
        assert wrong > 0, group.task_id


def test_workload_stats_counts_history_and_call_repeats() -> None:
    group = w.SqlTaskGroup(
        task_id="t",
        db="singer",
        kind="edit",
        instruction="",
        rollouts=(
            w.SqlRollout(("A", "B", "C")),
            w.SqlRollout(("A", "B", "D")),
            w.SqlRollout(("X", "B")),
        ),
    )
    stats = w.workload_stats([group])
    assert (stats.groups, stats.rollouts, stats.calls) == (1, 3, 8)
    assert stats.history_repeats == 2  # A, A-B
    assert stats.call_repeats == 3  # A, B, B
    assert stats.history_repeat_fraction == pytest.approx(0.25)


def test_raw_groups_are_the_recorded_trajectories_as_they_are() -> None:
    raw = [
        g for g in w.build_groups(recorded_tasks=0, edit_tasks=0, raw_tasks=10) if g.kind == "raw"
    ]
    assert len(raw) == 10
    for group in raw:
        task_id = group.task_id.removeprefix("spider:")
        recorded = w._recorded_trajectories(task_id, group.db)
        assert [r.actions for r in group.rollouts] == recorded
        assert 2 <= len(group.rollouts) <= 3
