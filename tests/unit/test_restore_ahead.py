"""The stash of forks restored ahead of time: when it restores, hands out and closes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sandbox._docker_ahead import RestoreAhead
from snapshots import SnapshotHandle


class Fake:
    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.thawed = False
        self.closed = False

    def close(self) -> None:
        self.closed = True


def handle(sid: str) -> SnapshotHandle:
    return SnapshotHandle(sid, "docker", "full", f"img-{sid}", 1)


class Restorer:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.made: list[Fake] = []
        self.fail = fail or set()

    def __call__(self, h: SnapshotHandle) -> Fake:
        if h.snapshot_id in self.fail:
            raise RuntimeError("criu said no")
        fake = Fake(h.snapshot_id)
        self.made.append(fake)
        return fake


def thaw(fake: Fake) -> None:
    fake.thawed = True


def eventually(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_restores_only_hot_snapshots_and_hands_them_out_thawed() -> None:
    restorer = Restorer()
    ahead = RestoreAhead(restorer, thaw, per_snapshot=2, hot_forks=2)
    assert ahead.take(handle("a")) is None  # first fork: not hot yet, nothing restored
    assert ahead.ready() == 0 and restorer.made == []
    assert ahead.take(handle("a")) is None  # hot now: two restores start
    eventually(lambda: ahead.ready() == 2)
    got = ahead.take(handle("a"))
    assert got is not None and got.thawed and got.sid == "a" and ahead.takes == 1
    ahead.close()
    assert all(f.closed for f in restorer.made if f is not got) and not got.closed


def test_drop_closes_ready_forks_and_stops_refilling() -> None:
    restorer = Restorer()
    ahead = RestoreAhead(restorer, thaw, per_snapshot=1, hot_forks=1)
    assert ahead.take(handle("a")) is None
    assert ahead.wait_ready("a", 5)
    ahead.drop("a")
    assert ahead.ready() == 0 and [f.closed for f in restorer.made] == [True]
    assert ahead.take(handle("a")) is None
    ahead.close()
    assert len(restorer.made) == 1


def test_a_failed_restore_is_not_retried_and_never_handed_out() -> None:
    restorer = Restorer(fail={"bad"})
    ahead = RestoreAhead(restorer, thaw, per_snapshot=1, hot_forks=1)
    assert ahead.take(handle("bad")) is None
    eventually(lambda: ahead.failures == 1)
    assert ahead.take(handle("bad")) is None
    ahead.close()
    assert ahead.failures == 1 and restorer.made == []


def test_never_more_than_max_total_ready_or_in_flight() -> None:
    restorer = Restorer()
    ahead = RestoreAhead(restorer, thaw, per_snapshot=2, hot_forks=1, max_total=3)
    for sid in "abc":
        ahead.take(handle(sid))
    eventually(lambda: ahead.ready() == 3)
    time.sleep(0.1)  # a fourth restore would have started by now
    assert len(restorer.made) == 3
    ahead.close()
    assert all(f.closed for f in restorer.made)


def test_drop_returns_after_the_fork_in_flight_is_closed() -> None:
    """A restore that finishes after ``drop`` started is closed before ``drop`` returns (its
    caller then removes what the fork reads, and tests count what is left)."""
    started, release = threading.Event(), threading.Event()

    class Slow(Fake):
        def close(self) -> None:
            time.sleep(0.2)  # a container removal takes a while
            self.closed = True

    made: list[Slow] = []

    def restore(h: SnapshotHandle) -> Slow:
        started.set()
        release.wait(5)
        made.append(Slow(h.snapshot_id))
        return made[-1]

    ahead = RestoreAhead(restore, thaw, per_snapshot=1, hot_forks=1)
    assert ahead.take(handle("a")) is None
    assert started.wait(5)
    threading.Timer(0.1, release.set).start()
    ahead.drop("a")
    assert [f.closed for f in made] == [True]
    ahead.close()
