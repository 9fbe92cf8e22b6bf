"""The node journal (tvcache/_journal.py) on its own: a commit that records what it was given.

What it must hold: every appended row reaches ``commit`` exactly as appended, in order, once a
drain returns; a row whose commit failed is kept and committed later; a file is removed only
once its rows are committed; :func:`recover` commits the files of dead writers (up to a torn
last record), never those of a live one.
"""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Observation, ToolCall
from tvcache import _schema as schema
from tvcache._journal import NodeJournal, read, recover
from tvcache._records import NodeRecord, NodeStats

Row = list[object]


class Recorder:
    """A commit that keeps what it got; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.fail = 0

    def __call__(self, rows: Sequence[Row]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the database is locked")
        self.rows.extend(list(row) for row in rows)


def row(i: int) -> Row:
    return [f"node-{i}", "root", None if i == 0 else f"node-{i - 1}", i, 0.25 * i, "out\x00é"]


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log")) if directory.exists() else []


def on_disk(directory: Path) -> list[Row]:
    """The rows the journal's files hold (a file waiting for the next rows holds none)."""
    return [row for path in files(directory) for row in read(path)]


def test_drain_commits_every_row_in_order_and_removes_the_files(tmp_path: Path) -> None:
    commit = Recorder()
    journal = NodeJournal(tmp_path / "j", commit, delay=60)  # the thread never flushes here
    for i in range(5):
        journal.append(row(i))
    assert journal.pending and on_disk(tmp_path / "j") == [row(i) for i in range(5)]
    journal.drain()
    assert commit.rows == [row(i) for i in range(5)]
    assert not journal.pending and on_disk(tmp_path / "j") == []
    journal.close()
    assert not (tmp_path / "j").exists()


def test_the_thread_commits_within_the_delay(tmp_path: Path) -> None:
    commit = Recorder()
    journal = NodeJournal(tmp_path / "j", commit, delay=0.01)
    journal.append(row(0))
    for _ in range(500):
        if commit.rows:
            break
        time.sleep(0.01)
    assert commit.rows == [row(0)]
    journal.close()


def test_a_journal_nobody_closed_is_collected_and_its_thread_ends(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "j", Recorder(), delay=0.01)
    journal.append(row(0))
    thread = journal._thread
    assert thread is not None and thread.is_alive()
    ref = weakref.ref(journal)
    del journal
    gc.collect()
    assert ref() is None
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_failed_commit_keeps_the_rows_for_the_next_one(tmp_path: Path) -> None:
    commit = Recorder()
    journal = NodeJournal(tmp_path / "j", commit, delay=60)
    journal.append(row(0))
    commit.fail = 1
    with pytest.raises(RuntimeError, match="locked"):
        journal.drain()
    assert journal.pending and on_disk(tmp_path / "j") == [row(0)]
    journal.append(row(1))  # goes to a new file, committed after the failed one
    journal.drain()
    assert commit.rows == [row(0), row(1)]
    assert on_disk(tmp_path / "j") == []
    journal.close()


def test_close_leaves_uncommitted_rows_for_recover(tmp_path: Path) -> None:
    commit = Recorder()
    journal = NodeJournal(tmp_path / "j", commit, delay=60)
    journal.append(row(0))
    commit.fail = 5
    with pytest.raises(RuntimeError):
        journal.close()
    later = Recorder()
    assert recover(tmp_path / "j", later) == 1
    assert later.rows == [row(0)] and files(tmp_path / "j") == []


def test_recover_skips_the_journal_of_a_live_writer(tmp_path: Path) -> None:
    live = NodeJournal(tmp_path / "j", Recorder(), delay=60)
    live.append(row(0))
    other = Recorder()
    assert recover(tmp_path / "j", other) == 0
    assert other.rows == [] and len(files(tmp_path / "j")) == 1
    live.close()


def test_recover_commits_the_journal_of_a_killed_writer(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from tvcache._journal import NodeJournal
        journal = NodeJournal(__import__("pathlib").Path({str(tmp_path / "j")!r}),
                              lambda rows: None, delay=3600)
        for i in range(3):
            journal.append(["node-%d" % i, i])
        os.kill(os.getpid(), 9)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert killed.returncode == -9
    commit = Recorder()
    assert recover(tmp_path / "j", commit) == 3
    assert commit.rows == [["node-0", 0], ["node-1", 1], ["node-2", 2]]
    assert files(tmp_path / "j") == []


def test_read_stops_at_a_torn_or_damaged_record(tmp_path: Path) -> None:
    journal = NodeJournal(tmp_path / "j", Recorder(), delay=60)
    for i in range(3):
        journal.append(row(i))
    (path,) = files(tmp_path / "j")
    whole = path.read_bytes()
    assert read(path) == [row(0), row(1), row(2)]
    torn = tmp_path / "torn.log"
    torn.write_bytes(whole[:-3])
    assert read(torn) == [row(0), row(1)]
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0xFF  # inside the second record
    torn.write_bytes(bytes(damaged))
    assert read(torn) == [row(0)]
    journal.close()


def test_a_failed_write_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the disk cut short (ENOSPC) would hide every later record from ``read``."""
    journal = NodeJournal(tmp_path / "j", Recorder(), delay=60)
    journal.append(row(0))
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError):
        journal.append(row(1))
    monkeypatch.setattr(os, "write", real_write)
    journal.append(row(2))
    (path,) = files(tmp_path / "j")
    assert read(path) == [row(0), row(2)]
    journal.close()


def test_a_forked_child_leaves_the_parents_rows_to_the_parent(tmp_path: Path) -> None:
    commit = Recorder()
    journal = NodeJournal(tmp_path / "j", commit, delay=60)
    journal.append(row(0))
    pid = os.fork()
    if pid == 0:  # the child: forgets the parent's rows, journals its own in a file of its own
        try:
            journal.after_fork()
            assert not journal.pending
            journal.append(row(7))
            os._exit(0 if len(files(tmp_path / "j")) == 2 else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    journal.drain()
    assert commit.rows == [row(0)]  # the parent's file is still its own and locked
    later = Recorder()
    assert recover(tmp_path / "j", later) == 1 and later.rows == [row(7)]
    journal.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(0, 10**6)),
            st.tuples(st.just("drain"), st.integers(0, 2)),  # how many commits fail first
        ),
        max_size=40,
    )
)
def test_every_appended_row_is_committed_once_or_recovered(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    """Any interleaving of appends and failing drains, then a crash: the rows committed
    before it plus those :func:`recover` commits are exactly the rows appended, in order."""
    directory = tmp_path_factory.mktemp("journal") / "j"
    commit = Recorder()
    journal = NodeJournal(directory, commit, delay=3600)
    appended: list[Row] = []
    for action, value in steps:
        if action == "append":
            appended.append([value, str(value)])
            journal.append(appended[-1])
        else:
            commit.fail = value
            with contextlib.suppress(RuntimeError):
                journal.drain()
    for each in (journal._file, *journal._failed):  # the process dies: its locks go
        if each is not None:
            os.close(each.fd)
    journal._reset()  # and so does what it held in memory
    after = Recorder()
    recover(directory, after)
    assert commit.rows + after.rows == appended
    assert files(directory) == []


_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    node_id=_text,
    parent=st.none() | _text,
    depth=st.integers(0, 10**6),
    call=st.none() | st.tuples(_text, st.dictionaries(_text, _json, max_size=4)),
    observation=st.none()
    | st.builds(
        Observation,
        output=_text,
        exit_code=st.integers(-255, 255),
        seconds=st.floats(0, 1e6),
        truncated=st.booleans(),
        timed_out=st.booleans(),
    ),
    flags=st.tuples(st.booleans(), st.booleans()),
    fingerprint=st.none() | _text,
    stats=st.builds(
        NodeStats,
        executions=st.integers(0, 10**9),
        hits=st.integers(0, 10**9),
        exec_seconds=st.floats(0, 1e9),
        seconds_saved=st.floats(0, 1e9),
        last_use=st.floats(0, 2e9),
    ),
    created=st.floats(0, 2e9),
)
def test_a_journaled_node_reads_back_as_the_same_node(
    tmp_path_factory: pytest.TempPathFactory,
    node_id: str,
    parent: str | None,
    depth: int,
    call: tuple[str, dict[str, object]] | None,
    observation: Observation | None,
    flags: tuple[bool, bool],
    fingerprint: str | None,
    stats: NodeStats,
    created: float,
) -> None:
    """Through the journal's file and back, a node is the node given: the row the store's
    thread commits is the row an immediate commit would have written."""
    record = NodeRecord(
        node_id=node_id,
        root_id="root",
        parent_id=parent,
        depth=depth,
        call_key=None if call is None else "key",
        call=None if call is None else ToolCall(call[0], call[1]),  # type: ignore[arg-type]
        observation=observation,
        nondeterministic=flags[0],
        read_only=flags[1],
        stats=stats,
        created=created,
        fingerprint=fingerprint,
    )
    commit = Recorder()
    directory = tmp_path_factory.mktemp("nodes") / "j"
    journal = NodeJournal(directory, commit, delay=3600)
    journal.append(schema.node_journal_row(record))
    (path,) = files(directory)
    (row_read,) = read(path)
    journal.close()
    (row_committed,) = commit.rows
    for back in (row_read, row_committed):
        got = schema.node_from_journal(back)
        assert got == record
        assert schema.node_values(got) == schema.node_values(record)


def test_a_row_of_another_shape_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a journaled node"):
        schema.node_from_journal(["only", "three", "values"])


def test_recover_removes_a_file_a_dead_writer_was_making_and_spares_a_live_ones(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    (directory / "1-dead-000000001.new").write_bytes(b"")
    live = NodeJournal(directory, Recorder(), delay=60)
    live.append(row(0))
    assert recover(directory, Recorder()) == 0
    assert [p.name for p in directory.iterdir()] == [live._file.path.name]  # type: ignore[union-attr]
    live.close()


def test_close_ends_the_thread_even_when_it_is_mid_batch(tmp_path: Path) -> None:
    """close() may signal the thread just before the thread resets its wake-up (between its
    batch wait and its commit): the thread must still end (it once waited forever)."""
    journal = NodeJournal(tmp_path / "j", Recorder(), delay=0.0)
    wake, closing = journal._wake, journal._closing

    class CloseArrivesFirst(threading.Event):
        def clear(self) -> None:
            closing.set()  # what close() does, arriving at the worst moment
            wake.set()
            super().clear()

    journal._wake = wake = CloseArrivesFirst()
    journal.append(row(0))
    thread = journal._thread
    assert thread is not None
    thread.join(timeout=10)
    assert not thread.is_alive(), "the journal's thread missed close()"
    journal.close()
