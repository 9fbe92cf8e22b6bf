"""Background work that drain() waits for as a whole."""

from __future__ import annotations

import threading

from snapshots._background import Background


def test_drain_waits_for_work_that_work_submitted() -> None:
    background = Background(2, "test-background")
    release = threading.Event()
    done: list[str] = []

    def second() -> None:
        release.wait(5)
        done.append("second")

    def first() -> None:
        background.submit(second)
        done.append("first")

    background.submit(first)
    threading.Timer(0.2, release.set).start()
    background.drain(10)
    assert done == ["first", "second"]
    background.shutdown()
