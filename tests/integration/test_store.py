"""The store on real SQLite files and a real PostgreSQL server: round trips, idempotence,
statistics, snapshot locks, write-behind, reopening, bad input, and SIGKILL at random moments."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from sandbox import Observation, RootSpec, ToolCall
from snapshots import SnapshotHandle, TvcacheError
from tvcache._records import NodeRecord, NodeStats, RootRecord, SnapshotRecord
from tvcache._store import SCHEMA_VERSION, StatsWriter, Store, StoreError, default_store_url

HERE = Path(__file__).parent
REPO = HERE.parent.parent


def root(root_id: str = "r1", task_id: str = "t1", identity: str = "sha256:abc") -> RootRecord:
    spec = RootSpec(task_id=task_id, backend="docker", template="img:1", options={"net": False})
    return RootRecord(root_id, spec, identity, created=100.0)


def node(
    node_id: str,
    parent: NodeRecord | None = None,
    *,
    root_id: str = "r1",
    output: str | None = "out",
    created: float = 1.0,
) -> NodeRecord:
    call = None if parent is None else ToolCall("bash", {"command": f"run {node_id}", "n": [1]})
    obs = None
    if parent is not None and output is not None:
        obs = Observation(output, exit_code=3, seconds=1.25, truncated=True, timed_out=False)
    return NodeRecord(
        node_id=node_id,
        root_id=root_id,
        parent_id=None if parent is None else parent.node_id,
        depth=0 if parent is None else parent.depth + 1,
        call_key=None if parent is None else f"key-{node_id}",
        call=call,
        observation=obs,
        nondeterministic=False,
        read_only=parent is not None and node_id.endswith("ro"),
        stats=NodeStats(executions=1, hits=2, exec_seconds=1.5, seconds_saved=3.0, last_use=9.5),
        created=created,
    )


def handle(snapshot_id: str, size: int = 1000) -> SnapshotHandle:
    return SnapshotHandle(snapshot_id, "docker", "fs", f"tvcache/snap:{snapshot_id}", size,
                          {"cwd": "/work", "env": {"A": "1"}})  # fmt: skip


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def chain(store: Store) -> list[NodeRecord]:
    """A root with a node of its own and two calls below it."""
    store.put_root(root())
    base = node("n0")
    first = node("n1", base)
    second = node("n2ro", first)
    for each in (base, first, second):
        store.put_node(each)
    return [base, first, second]


# --- round trips ---------------------------------------------------------------------------


def test_roots_round_trip_and_put_root_keeps_the_first(store: Store) -> None:
    first, other = root("r1", "t1"), root("r2", "t2", identity="sha256:def")
    assert store.put_root(first) and store.put_root(other)  # new
    assert not store.put_root(dataclasses.replace(first, identity="changed", created=5.0))
    assert store.get_root("r1") == first
    assert store.get_root("missing") is None
    assert store.roots() == [first, other]
    assert store.find_roots("t2") == [other]
    assert store.find_roots("nope") == []


def test_nodes_round_trip_every_field(store: Store) -> None:
    store.put_root(root())
    base = node("n0")
    strange = "NUL\x00 é 漢字 \U0001f600 lone\ud800surrogate \ufdd0tvcache-json:looks-escaped"
    nodes = [
        base,
        node("a", base, output=strange),
        node("b", base, output="x" * 2_000_000),
        node("c", base, output=""),
        node("d", base, output=None),
        node('\ufdd0tvcache-json:"x"', base),
    ]
    for each in nodes:
        store.put_node(each)
    loaded = store.load_nodes("r1")
    assert loaded[0] == base
    assert sorted(loaded[1:], key=lambda n: n.node_id) == sorted(nodes[1:], key=lambda n: n.node_id)
    assert store.get_node("a") == nodes[1]
    assert store.get_node("missing") is None


def test_put_node_is_idempotent(store: Store, chain: list[NodeRecord]) -> None:
    store.put_node(chain[1])
    store.put_node(dataclasses.replace(chain[1], observation=Observation("other"), created=7.0))
    assert store.node_count() == 3
    assert store.get_node("n1") == chain[1]


def test_load_nodes_puts_parents_before_children(store: Store) -> None:
    store.put_root(root())
    rnd = random.Random(1)
    made = [node("n0", created=1000.0)]
    for i in range(60):
        parent = rnd.choice(made)
        made.append(node(f"n{i + 1}", parent, created=1000.0 - i))  # newer rows, lower depth
    for each in made:
        store.put_node(each)
    loaded = store.load_nodes("r1")
    assert sorted(loaded, key=lambda n: n.node_id) == sorted(made, key=lambda n: n.node_id)
    seen: set[str | None] = {None}
    for each in loaded:
        assert each.parent_id in seen
        seen.add(each.node_id)


def test_node_count_per_root(store: Store, chain: list[NodeRecord]) -> None:
    store.put_root(root("r2", "t2"))
    store.put_node(node("other", root_id="r2"))
    assert store.node_count() == 4
    assert store.node_count("r1") == 3
    assert store.node_count("r2") == 1
    assert store.node_count("missing") == 0


def test_a_node_must_refer_to_stored_rows(store: Store, chain: list[NodeRecord]) -> None:
    orphan = dataclasses.replace(node("x", chain[2]), parent_id="not-stored")
    with pytest.raises(StoreError, match="parent before its children"):
        store.put_node(orphan)
    with pytest.raises(StoreError, match="root before its nodes"):
        store.put_node(node("y", root_id="no-root"))
    assert store.node_count() == 3


def test_write_stats_in_one_batch(store: Store, chain: list[NodeRecord]) -> None:
    new = NodeStats(executions=4, hits=1_000_000_000_000, exec_seconds=2.5, seconds_saved=0.125,
                    last_use=1.7e9)  # fmt: skip
    store.write_stats({"n1": new, "n2ro": NodeStats(hits=1), "not-stored": NodeStats(hits=9)})
    store.write_stats({})
    assert store.get_node("n1") == dataclasses.replace(chain[1], stats=new)
    assert store.get_node("n2ro") == dataclasses.replace(chain[2], stats=NodeStats(hits=1))
    assert store.get_node("n0") == chain[0]


def test_set_flags(store: Store, chain: list[NodeRecord]) -> None:
    store.set_flags("n1", nondeterministic=True)
    got = store.get_node("n1")
    assert got is not None and got.nondeterministic and not got.read_only
    store.set_flags("n1", read_only=True)
    store.set_flags("n1")
    got = store.get_node("n1")
    assert got is not None and got.nondeterministic and got.read_only
    store.set_flags("n1", nondeterministic=False, read_only=False)
    assert store.get_node("n1") == chain[1]
    with pytest.raises(StoreError, match="no such node"):
        store.set_flags("missing", read_only=True)


def test_snapshots_replace_and_delete(store: Store, chain: list[NodeRecord]) -> None:
    store.put_root(root("r2", "t2"))
    store.put_node(node("m0", root_id="r2"))
    one = SnapshotRecord("n1", "r1", handle("s1"), created=10.0)
    two = SnapshotRecord("n2ro", "r1", handle("s2", size=5), created=11.0)
    three = SnapshotRecord("m0", "r2", handle("s3"), created=12.0)
    for each in (one, two, three):
        store.put_snapshot(each)
    replaced = SnapshotRecord("n1", "r1", handle("s1b", size=7), created=13.0)
    store.put_snapshot(replaced)
    assert store.snapshots("r1") == [two, replaced]
    assert store.snapshots() == [two, three, replaced]
    assert store.delete_snapshot("n2ro") is True
    assert store.delete_snapshot("n2ro") is False
    assert store.snapshots("r1") == [replaced]
    with pytest.raises(StoreError, match="node before its snapshot"):
        store.put_snapshot(SnapshotRecord("missing", "r1", handle("s4"), created=1.0))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_locks_and_stale_lock_release(store: Store, chain: list[NodeRecord]) -> None:
    store.put_snapshot(SnapshotRecord("n1", "r1", handle("s1"), created=1.0))
    store.put_snapshot(SnapshotRecord("n2ro", "r1", handle("s2"), created=1.0))
    store.lock_snapshot("n1", "fork-a")
    store.lock_snapshot("n1", "fork-a")  # renewing is fine
    store.lock_snapshot("n2ro", "crashed", pid=_dead_pid())
    assert store.locked_node_ids() == {"n1", "n2ro"}
    assert store.delete_snapshot("n1", if_unlocked=True) is False
    assert store.release_stale_locks() == 1
    assert store.release_stale_locks() == 0
    assert store.locked_node_ids() == {"n1"}
    assert store.delete_snapshot("n2ro", if_unlocked=True) is True
    store.unlock_snapshot("n1", "fork-a")
    store.unlock_snapshot("n1", "fork-a")
    assert store.locked_node_ids() == set()
    assert store.delete_snapshot("n1", if_unlocked=True) is True
    with pytest.raises(StoreError, match="has none"):
        store.lock_snapshot("n1", "late")


def test_a_reused_pid_does_not_keep_a_lock(store: Store, chain: list[NodeRecord]) -> None:
    """After a crash a restarted server (a container's pid 1) may get the holder's pid back."""
    store.put_snapshot(SnapshotRecord("n1", "r1", handle("s1"), created=1.0))
    store.lock_snapshot("n1", "old-life")
    engine = create_engine(make_url(store.url).set(drivername=_driver(store.url)))
    with engine.begin() as conn:
        conn.execute(text("UPDATE snapshot_locks SET started = started - 100"))
    engine.dispose()
    assert store.release_stale_locks() == 1


def test_deleting_a_snapshot_drops_its_locks(store: Store, chain: list[NodeRecord]) -> None:
    store.put_snapshot(SnapshotRecord("n1", "r1", handle("s1"), created=1.0))
    store.lock_snapshot("n1", "fork-a")
    assert store.delete_snapshot("n1") is True
    assert store.locked_node_ids() == set()


# --- write-behind --------------------------------------------------------------------------


def test_stats_writer_flushes_in_the_background(store: Store, chain: list[NodeRecord]) -> None:
    writer = StatsWriter(store, interval=0.02)
    live = NodeStats(hits=1)
    writer.mark("n1", live)
    live.hits, live.seconds_saved = 5, 2.5  # the flush copies the values current then
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = store.get_node("n1")
        if got is not None and got.stats.hits == 5:
            break
        time.sleep(0.01)
    got = store.get_node("n1")
    assert got is not None and got.stats == NodeStats(hits=5, seconds_saved=2.5)
    writer.close()


def test_stats_writer_flushes_on_close(store: Store, chain: list[NodeRecord]) -> None:
    writer = StatsWriter(store, interval=3600)
    writer.mark("n1", NodeStats(hits=1))
    writer.mark("n1", NodeStats(hits=2))  # latest wins
    writer.mark("n2ro", NodeStats(executions=3))
    got = store.get_node("n1")
    assert got is not None and got.stats == chain[1].stats
    writer.close()
    writer.close()
    assert [n.stats for n in store.load_nodes("r1")[1:]] == [
        NodeStats(hits=2),
        NodeStats(executions=3),
    ]
    with pytest.raises(StoreError, match="closed"):
        writer.mark("n1", NodeStats())


def test_concurrent_writers(store: Store) -> None:
    store.put_root(root())
    base = node("n0")
    store.put_node(base)
    writer = StatsWriter(store, interval=0.001)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            parent = base
            for i in range(20):
                child = node(f"t{t}-{i}", parent)
                store.put_node(child)
                store.put_node(node("shared", base))  # the same node from every thread
                writer.mark(child.node_id, NodeStats(hits=i))
                assert store.get_node(parent.node_id) is not None
                parent = child
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert errors == []
    assert store.node_count() == 1 + 1 + 8 * 20
    got = store.get_node("t3-19")
    assert got is not None and got.stats == NodeStats(hits=19)


# --- lifetime ------------------------------------------------------------------------------


def test_reopening_continues_where_it_stopped(store_url: str) -> None:
    first = Store(store_url)
    first.put_root(root())
    base, child = node("n0"), node("n1", node("n0"))
    first.put_node(base)
    first.put_node(child)
    first.put_snapshot(SnapshotRecord("n1", "r1", handle("s1"), created=1.0))
    first.close()
    with pytest.raises(StoreError, match="closed"):
        first.node_count()
    second = Store(store_url)
    assert second.load_nodes("r1") == [base, child]
    assert [s.node_id for s in second.snapshots()] == ["n1"]
    second.put_node(node("n2", child))
    second.close()
    with Store(store_url) as third:
        assert third.node_count("r1") == 3
        size = third.size_bytes()
        assert size is not None and size > 0


def test_a_newer_schema_is_refused(store_url: str) -> None:
    Store(store_url).close()
    engine = create_engine(make_url(store_url).set(drivername=_driver(store_url)))
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer") as info:
        Store(store_url)
    assert "upgrade tvcache" in str(info.value)


def test_an_in_memory_store_serves_threads() -> None:
    with Store("sqlite://") as memory:
        memory.put_root(root())
        memory.put_node(node("n0"))
        threads = [
            threading.Thread(target=memory.put_node, args=(node(f"c{i}", node("n0")),))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert memory.node_count() == 9
        assert memory.size_bytes() is None


def test_a_forked_child_uses_connections_of_its_own(store: Store) -> None:
    """Rollout workers fork; a connection shared across fork() corrupts the conversation.
    The parent is a fresh interpreter (``_fork_worker.py``), the child writes and closes."""
    ran = subprocess.run(
        [sys.executable, str(HERE / "_fork_worker.py"), store.url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE,
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["child_exit"] == 0, ran.stderr  # the child wrote and counted on its own
    assert seen["added"] == 2  # its node and the parent's after it
    assert seen["same_backend"]  # the child left the parent's connection alone


def _driver(url: str) -> str:
    return "postgresql+psycopg" if url.startswith("postgres") else "sqlite"


# --- bad input -----------------------------------------------------------------------------


def test_a_corrupted_sqlite_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError) as info:
        Store(f"sqlite:///{path}")
    message = str(info.value)
    assert str(path) in message and "move it away" in message and "not a SQLite database" in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.db"]


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a tvcache store"):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_a_wal_mode_database_of_another_application_is_refused_without_leftovers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a tvcache store"):
        Store(f"sqlite:///{path}")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal, no -shm


@pytest.mark.postgres
def test_a_postgres_database_of_another_application_is_refused(postgres_url: str) -> None:
    foreign = create_engine(postgres_url)
    try:
        with foreign.begin() as conn:
            conn.execute(text("CREATE TABLE accounts (id integer PRIMARY KEY)"))
        with pytest.raises(StoreError, match="another application's tables \\(accounts\\)"):
            Store(postgres_url)
        with foreign.connect() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            assert sorted(tables) == ["accounts"]
    finally:
        foreign.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://user@host/db", "only in SQLite or PostgreSQL"),
        ("nosuchdb://host/db", "only in SQLite or PostgreSQL"),
        ("sqlite+nosuchdriver:///x.db", "cannot use the store URL"),
        ("postgresql+psycopg://me:s3cret@127.0.0.1:1/db", "could not open the store"),
    ],
)
def test_bad_urls_give_clear_errors(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        Store(url)
    assert isinstance(info.value, TvcacheError)
    assert "s3cret" not in str(info.value)
    assert info.value.hint


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        Store(f"sqlite:///{tmp_path}")


def test_default_store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVCACHE_STORE_URL", "postgresql+psycopg://h/db")
    assert default_store_url() == "postgresql+psycopg://h/db"
    monkeypatch.delenv("TVCACHE_STORE_URL")
    monkeypatch.setenv("TVCACHE_HOME", str(tmp_path / "home"))
    assert default_store_url() == f"sqlite:///{tmp_path / 'home' / 'cache.db'}"
    assert (tmp_path / "home").is_dir()
    monkeypatch.delenv("TVCACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path / '.cache' / 'tvcache' / 'cache.db'}"


# --- crashes -------------------------------------------------------------------------------


def test_sigkill_loses_nothing_that_was_acknowledged(store_url: str) -> None:
    """Kill a writer at random moments; every node it reported stored must be there, intact."""
    sys.path.insert(0, str(HERE))
    import _crash_writer as writer

    rounds = 10 if store_url.startswith("sqlite") else 5
    rnd = random.Random(42)
    acknowledged: list[str] = []
    journaled = 0  # rounds whose killed writer left rows only in its node journal
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    for round_ in range(rounds):
        process = subprocess.Popen(
            [sys.executable, str(HERE / "_crash_writer.py"), store_url, str(round_)],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n", "the writer did not start"
        time.sleep(rnd.uniform(0.0, 0.25))
        process.send_signal(signal.SIGKILL)
        out = process.stdout.read()
        process.wait()
        process.stdout.close()
        lines = out.split(b"\n")[:-1]  # the last piece was cut mid-line, or is empty
        acknowledged += [line.decode() for line in lines]
        if store_url.startswith("sqlite"):
            path = Path(make_url(store_url).database or "")
            journal = path.with_name(path.name + "-tvjournal")
            journaled += any(f.stat().st_size for f in journal.glob("*.log"))

        with Store(store_url) as store:
            stored = {n.node_id: n for n in store.load_nodes(writer.ROOT.root_id)}
        for node_id in acknowledged:
            assert node_id in stored, f"round {round_}: node {node_id} acknowledged, then lost"
            got = stored[node_id]
            assert got.parent_id in stored
            parent = stored[got.parent_id]
            assert got.depth == parent.depth + 1
            assert got.call is not None
            expected = writer.make_node(got.parent_id, got.depth, str(got.call.args["label"]))
            assert dataclasses.replace(got, stats=expected.stats) == expected
        if store_url.startswith("sqlite"):
            path = make_url(store_url).database
            assert path is not None
            with sqlite3.connect(path) as check:
                assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                assert check.execute("PRAGMA foreign_key_check").fetchall() == []
            check.close()
    assert len(acknowledged) > rounds, "the writer barely wrote; the test proved little"
    if store_url.startswith("sqlite"):
        assert journaled, "no kill left a journal to recover: the test proved little of it"


def test_concurrent_node_writes_with_a_bad_one(store: Store, chain: list[NodeRecord]) -> None:
    """Nodes of concurrent writers may share a transaction: a bad node (its parent is not
    stored) fails its own writer with the usual hint, and every other node is stored."""
    errors: dict[str, BaseException] = {}

    def work(name: str) -> None:
        record = node(name, chain[1])
        if name.endswith("7"):
            record = dataclasses.replace(record, parent_id="not-stored")
        try:
            store.put_node(record)
        except StoreError as error:
            errors[name] = error

    threads = [threading.Thread(target=work, args=(f"c{i}",)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(errors) == ["c7"] and "parent before its children" in str(errors["c7"])
    assert store.node_count() == 3 + 15
    assert store.get_node("c3") == node("c3", chain[1])


def test_journaled_nodes_are_read_back_at_once_here_and_by_others_after_a_flush(
    tmp_path: Path,
) -> None:
    """A SQLite file's nodes go through the node journal: every read of the writing process
    sees them at once (it commits the journal first), another process after ``flush`` or
    the journal's delay, and closing the writer commits and removes the journal."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    writer, reader = Store(url), Store(url)
    writer.put_root(root())
    base = node("n0")
    nodes = [base, node("n1", base), node("n2", base)]
    for each in nodes:
        writer.put_node(each)
    assert writer.get_node("n2") == nodes[2] and writer.node_count() == 3
    writer.flush()
    assert reader.load_nodes("r1") == nodes
    writer.put_node(node("n3", nodes[1]))
    deadline = time.monotonic() + 10
    while reader.get_node("n3") is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the journal's thread commits within its delay (0.05 s)
    assert reader.get_node("n3") == node("n3", nodes[1])
    writer.put_node(node("n4", nodes[1]))
    writer.close()
    assert reader.get_node("n4") == node("n4", nodes[1])
    assert list((tmp_path / "cache.db-tvjournal").glob("*.log")) == []
    reader.close()
