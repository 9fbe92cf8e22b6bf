"""Pausing a container retries the cgroup v1 freezer's transient give-up, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from snapshots import docker_fs


class _API:
    """Fails ``pause`` with the given messages in turn, then succeeds."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.calls = 0

    def pause(self, container: str) -> None:
        self.calls += 1
        if self.failures:
            raise RuntimeError(self.failures.pop(0))


FREEZE = "Cannot pause container c: OCI runtime pause failed: unable to freeze: unknown"


def test_a_freeze_the_runtime_gave_up_on_is_tried_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(docker_fs.time, "sleep", lambda _: None)
    api = _API(FREEZE, FREEZE)
    docker_fs.pause(api, "c")  # type: ignore[arg-type]
    assert api.calls == 3


def test_other_errors_and_a_freeze_that_never_succeeds_raise(monkeypatch: Any) -> None:
    monkeypatch.setattr(docker_fs.time, "sleep", lambda _: None)
    gone = _API("No such container: c")
    with pytest.raises(RuntimeError, match="No such container"):
        docker_fs.pause(gone, "c")  # type: ignore[arg-type]
    assert gone.calls == 1
    stuck = _API(*[FREEZE] * 10)
    with pytest.raises(RuntimeError, match="unable to freeze"):
        docker_fs.pause(stuck, "c", attempts=3)  # type: ignore[arg-type]
    assert stuck.calls == 3
