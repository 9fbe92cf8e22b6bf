"""Group commit: concurrent writers share transactions, each returns only once its row is in."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from tvcache._group_commit import GroupCommit


class Recorder:
    """A write_batch that records its batches; the first one waits until ``release``."""

    def __init__(self, bad: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.committed: set[int] = set()
        self.bad = bad
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, rows: Sequence[dict[str, Any]]) -> None:
        ids = [int(r["id"]) for r in rows]
        if not self.batches:
            self.entered.set()
            self.release.wait(10)
        self.batches.append(ids)
        if self.bad & set(ids):
            raise ValueError(f"bad row in {ids}")
        self.committed.update(ids)


def writers(group: GroupCommit, ids: range, done: dict[int, object]) -> list[threading.Thread]:
    def work(i: int) -> None:
        try:
            group.write({"id": i})
            done[i] = "ok"
        except ValueError as error:
            done[i] = error

    return [threading.Thread(target=work, args=(i,)) for i in ids]


def wait_queued(group: GroupCommit, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(group._queue) < count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(group._queue) == count


def test_rows_queued_behind_a_commit_share_the_next_transaction() -> None:
    recorder = Recorder()
    group = GroupCommit(recorder)
    done: dict[int, object] = {}
    first = writers(group, range(1), done)
    first[0].start()
    assert recorder.entered.wait(10)
    rest = writers(group, range(1, 6), done)
    for thread in rest:
        thread.start()
    wait_queued(group, 5)
    assert done == {}  # nobody returns before their row is committed
    recorder.release.set()
    for thread in first + rest:
        thread.join(10)
    assert recorder.batches[0] == [0] and sorted(recorder.batches[1]) == [1, 2, 3, 4, 5]
    assert len(recorder.batches) == 2
    assert done == dict.fromkeys(range(6), "ok") and recorder.committed == set(range(6))


def test_a_bad_row_fails_only_its_own_writer() -> None:
    recorder = Recorder(bad=frozenset({3}))
    group = GroupCommit(recorder)
    done: dict[int, object] = {}
    first = writers(group, range(1), done)
    first[0].start()
    assert recorder.entered.wait(10)
    rest = writers(group, range(1, 6), done)
    for thread in rest:
        thread.start()
    wait_queued(group, 5)
    recorder.release.set()
    for thread in first + rest:
        thread.join(10)
    assert isinstance(done.pop(3), ValueError)
    assert done == {i: "ok" for i in (0, 1, 2, 4, 5)}
    assert recorder.committed == {0, 1, 2, 4, 5}


def test_a_lone_writer_gets_its_own_error() -> None:
    recorder = Recorder(bad=frozenset({7}))
    recorder.release.set()
    with pytest.raises(ValueError, match="bad row"):
        GroupCommit(recorder).write({"id": 7})
