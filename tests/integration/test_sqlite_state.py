"""The ``sqlite`` tool's state claims against fresh executions on the real local backend.

A read is read-only only when the database's files are unchanged (a read recovers a hot journal
or checkpoints a WAL), and two histories merge only when no later call can tell them apart (SQL
sees page layout, header fields and ``rootpage``, bash sees bytes). Each case runs history ``a``,
then history ``b`` on the same engine, and compares ``b``'s last observation with a fresh
execution of ``b`` in a new sandbox.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sandbox import LocalBackend, LocalSandbox, Observation, RootSpec, ToolCall
from tvcache import Settings, open_engine
from tvcache._settings import StateAwareness

Call = tuple[str, str]
"""``("bash", command)`` or ``("sqlite", sql)``."""

CRASH = (
    "python3 -c \"import sqlite3,os; c=sqlite3.connect('db.sqlite'); "
    "c.execute('PRAGMA cache_size=1'); c.execute('BEGIN'); c.execute('UPDATE t SET b=b+1'); "
    'os._exit(0)"'
)
"""Dies mid-transaction after spilling pages: leaves a hot ``db.sqlite-journal``."""
CRASH_WAL = (
    "python3 -c \"import sqlite3,os; c=sqlite3.connect('db.sqlite'); "
    "c.execute('PRAGMA journal_mode=WAL'); c.execute('UPDATE t SET b=b+1'); c.commit(); "
    'os._exit(0)"'
)
"""Dies after a WAL commit: leaves ``-wal`` and ``-shm`` that the next reader checkpoints."""

MODES = {
    "read-only": StateAwareness(read_only=True),
    "fingerprint": StateAwareness(fingerprint_tools=frozenset({"*"})),
    "sqlite fingerprint": StateAwareness(fingerprint_tools=frozenset({"sqlite"})),
}


SCHEMA = (
    "CREATE TABLE t(a INTEGER PRIMARY KEY, b INT, pad TEXT); CREATE INDEX tb ON t(b, pad);"
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300)"
    " INSERT INTO t(b, pad) SELECT x, printf('%0200d', x) FROM n;"
)


def make_template(directory: Path) -> Path:
    """A database with an index and enough rows that deletes leave free pages."""
    directory.mkdir()
    conn = sqlite3.connect(directory / "db.sqlite")
    conn.executescript(SCHEMA)
    conn.close()
    return directory


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return make_template(tmp_path / "template")


def call(tool: str, text: str) -> ToolCall:
    return ToolCall(tool, {"command": text} if tool == "bash" else {"sql": text})


def fresh(tmp_path: Path, template: Path, history: Sequence[Call]) -> list[str]:
    """Every output of ``history`` executed from the template in one new sandbox."""
    backend = LocalBackend(tmp_path / "fresh-snapshots", default_timeout=30)
    with backend.start(RootSpec("fresh", template=str(template))) as box:
        return [box.run(call(*step)).output for step in history]


def served(
    tmp_path: Path, template: Path, state: StateAwareness, histories: Sequence[Sequence[Call]]
) -> Iterator[list[str]]:
    """Each history's outputs, the histories run one after another on one engine."""
    engine = open_engine(Settings(home=tmp_path / "home", state=state), persist=False)
    try:
        for history in histories:
            with engine.session("sql", template=str(template)) as rollout:
                results = [rollout.call(tool, **call(tool, text).args) for tool, text in history]
            yield [result.output for result in results]
    finally:
        engine.close()


@pytest.mark.parametrize("crash", [CRASH, CRASH_WAL], ids=["journal", "wal"])
@pytest.mark.parametrize("mode", ["read-only", "fingerprint"])
def test_a_read_that_recovers_files_is_not_read_only(
    tmp_path: Path, template: Path, crash: str, mode: str
) -> None:
    first = [("bash", crash), ("bash", "ls"), ("bash", "md5sum db.sqlite")]
    second = [("bash", crash), ("sqlite", "SELECT count(*) FROM t"), *first[1:]]
    a, b = served(tmp_path, template, MODES[mode], [first, second])
    expected = fresh(tmp_path, template, second)
    assert a[1] != expected[2]  # the crash left side files that the read removed
    assert b == expected


HALF = "DELETE FROM t WHERE b % 2 = 0"
SERVED_WRONG: dict[str, tuple[list[str], list[str], str]] = {
    # name: (history a, history b, the probe both end with); a's probe differs from b's fresh
    "vacuum": ([HALF], [f"{HALF}; VACUUM"], "PRAGMA freelist_count"),
    "application_id": ([], ["PRAGMA application_id = 7"], "PRAGMA application_id"),
    "journal_mode": ([], ["PRAGMA journal_mode = WAL"], "PRAGMA journal_mode"),
    "schema_version": ([], ["CREATE TABLE z(x)", "DROP TABLE z"], "PRAGMA schema_version"),
    "reindex": ([HALF], [HALF, "REINDEX"], "PRAGMA freelist_count"),
    "rootpage": (
        ["CREATE TABLE p(x)", "CREATE TABLE q(x)"],
        ["CREATE TABLE q(x)", "CREATE TABLE p(x)"],
        "SELECT name, rootpage FROM sqlite_master WHERE name IN ('p', 'q') ORDER BY name",
    ),
    "page_count": (
        ["UPDATE t SET b = b + 1", "UPDATE t SET b = b - 1"],
        ["INSERT INTO t(b, pad) SELECT b, pad FROM t", "DELETE FROM t WHERE a > 300"],
        "PRAGMA page_count",
    ),
}


@pytest.mark.parametrize("case", sorted(SERVED_WRONG))
@pytest.mark.parametrize("mode", ["read-only", "sqlite fingerprint"])
def test_histories_that_sql_tells_apart_do_not_share_observations(
    tmp_path: Path, template: Path, case: str, mode: str
) -> None:
    first, second, probe = SERVED_WRONG[case]
    a_history = [("sqlite", s) for s in [*first, probe]]
    b_history = [("sqlite", s) for s in [*second, probe]]
    a, b = served(tmp_path, template, MODES[mode], [a_history, b_history])
    expected = fresh(tmp_path, template, b_history)[-1]
    assert a[-1] != expected  # the case is real: a wrong merge would serve a's answer
    assert b[-1] == expected


# ------------------------------------------------------------------- no way out of the sandbox


@pytest.fixture
def box(tmp_path: Path, template: Path) -> Iterator[LocalSandbox]:
    backend = LocalBackend(tmp_path / "snapshots", default_timeout=10)
    with backend.start(RootSpec("escape", template=str(template))) as sandbox:
        yield sandbox


def run(sandbox: LocalSandbox, tool: str, text: str) -> Observation:
    return sandbox.run(call(tool, text))


def test_read_only_claims(box: LocalSandbox) -> None:
    """Reads and value-less PRAGMAs of a quiet database are read-only; a database in WAL mode
    is never quiet (a read creates and removes ``-wal`` and ``-shm``)."""
    for read in ("SELECT count(*) FROM t", "PRAGMA user_version", "PRAGMA freelist_count"):
        assert run(box, "sqlite", read).read_only, read
    for write in ("PRAGMA user_version = 1", "REINDEX", "BEGIN; SELECT 1; COMMIT"):
        assert not run(box, "sqlite", write).read_only, write
    run(box, "sqlite", "PRAGMA journal_mode = WAL")
    wal_read = run(box, "sqlite", "SELECT count(*) FROM t")
    assert wal_read.output == "(300,)" and not wal_read.read_only


def test_attach_and_vacuum_into_are_refused_and_create_nothing(
    box: LocalSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere.db"
    for statement in (
        f"ATTACH DATABASE '{elsewhere}' AS x",
        "ATTACH 'relative.db' AS x",  # relative to the server's working directory
        "ATTACH ':memory:' AS x",
        f"VACUUM INTO '{elsewhere}'",
        "SELECT 1; DETACH main",
    ):
        refused = run(box, "sqlite", statement)
        assert refused.exit_code == 1 and not refused.read_only, statement
        assert refused.output.startswith(
            ("Error: ATTACH is not allowed: ", "Error: DETACH is not allowed: ")
        ), refused.output
    assert not elsewhere.exists() and not (tmp_path / "relative.db").exists()
    assert run(box, "sqlite", "VACUUM").output == "OK, 0 rows changed"  # a temporary attach
    assert run(box, "bash", "ls").output == "db.sqlite\n"


def test_extensions_and_process_wide_pragmas_are_out_of_reach(box: LocalSandbox) -> None:
    loaded = run(box, "sqlite", "SELECT load_extension('/no/such/library')")
    assert loaded.exit_code == 1 and "not authorized" in loaded.output
    for pragma in ("soft_heap_limit = 1", "hard_heap_limit = 1", "temp_store_directory = '/'"):
        refused = run(box, "sqlite", f"PRAGMA {pragma}")
        assert refused.exit_code == 1 and "whole process" in refused.output, pragma
    with sqlite3.connect(":memory:") as conn:
        assert conn.execute("PRAGMA soft_heap_limit").fetchone() == (0,)
        assert conn.execute("PRAGMA hard_heap_limit").fetchone() == (0,)


@pytest.mark.parametrize(
    ("plant", "what"),
    [
        ("ln -s {outside} db.sqlite-journal", "'db.sqlite-journal' is a symbolic link"),
        ("ln -s {outside} db.sqlite-wal", "'db.sqlite-wal' is a symbolic link"),
        ("mv db.sqlite r.sqlite && ln -s r.sqlite db.sqlite", "'db.sqlite' is a symbolic link"),
        ("mkfifo db.sqlite-journal", "'db.sqlite-journal' is not a regular file"),
        ("mkfifo db.sqlite-shm", "'db.sqlite-shm' is not a regular file"),
        ("mkdir db.sqlite-wal", "'db.sqlite-wal' is not a regular file"),
        # isolated bash cannot see outside files to link them; a link inside has the same effect
        ("ln db.sqlite twin.sqlite", "'db.sqlite' has other hard links"),
    ],
)  # fmt: skip
def test_links_and_special_side_files_are_refused(
    box: LocalSandbox, tmp_path: Path, plant: str, what: str
) -> None:
    """In-process SQLite would follow a planted link (to the store, say) or block on a FIFO."""
    outside = tmp_path / "store.db"
    make_template(tmp_path / "other")
    (tmp_path / "other" / "db.sqlite").rename(outside)
    before = outside.read_bytes()
    assert run(box, "bash", plant.format(outside=outside)).exit_code == 0
    for statement in ("UPDATE t SET b = b + 1", "SELECT count(*) FROM t"):
        refused = run(box, "sqlite", statement)
        assert refused.exit_code == 1 and not refused.read_only
        assert refused.output.startswith(f"Error: cannot open database 'db.sqlite': {what};")
    assert outside.read_bytes() == before
