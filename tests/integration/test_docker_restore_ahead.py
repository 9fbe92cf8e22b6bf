"""``full`` forks restored ahead of time: handed out after a thaw, in a cold fork's state."""

from __future__ import annotations

from typing import Any

import pytest
from docker_env import BackendFactory, sh, start

from sandbox import _runc
from sandbox.docker import DockerBackend

pytestmark = pytest.mark.docker

COUNTER = (
    "(i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done) &"
)


def _paused(backend: DockerBackend, api: Any) -> list[str]:
    """The states of the backend's containers besides the source's and closed forks'."""
    if backend.runc is None:
        mine = api.containers(all=True, filters={"label": f"tvcache.owner={backend.instance}"})
        return [str(c["State"]) for c in mine]
    backend.runc.drain()  # closed forks go in the background
    names = [n for n in _runc.containers() if (backend.runc.boxes / n).is_dir()]
    return [str((_runc.state(n) or {}).get("status")) for n in names]


def test_a_hot_snapshot_forks_from_a_restore_done_ahead(
    make_backend: BackendFactory, api: Any, full_runtime: str
) -> None:
    backend = make_backend("full", restore_ahead=1)
    assert backend.ahead is not None
    with start(backend) as box:
        sh(box, "echo base > /work/f; export MARK=kept; " + COUNTER)
        at_snapshot = int(sh(box, "until [ -s /tmp/n ]; do sleep 0.01; done; cat /tmp/n").output)
        snap = box.snapshot("s")
        assert snap.level == "full", snap.meta.get("full_failure")
        sh(box, "echo source-later > /work/f")
    try:
        for _ in range(2):  # the second fork makes the snapshot hot
            with backend.fork(snap) as cold:
                assert cold.restore_fallback is None
        assert backend.counters["full_ahead_takes"] == 0
        assert backend.ahead.wait_ready(snap.snapshot_id, timeout=60)
        assert _paused(backend, api) == ["paused"]
        with backend.fork(snap) as fork, backend.fork(snap) as other:
            assert backend.counters["full_ahead_takes"] == 1
            assert fork.restore_fallback is None and fork.boot_id == box.boot_id
            first = int(sh(fork, "cat /tmp/n").output)
            assert at_snapshot <= first < int(sh(fork, "sleep 0.3; cat /tmp/n").output)
            assert sh(fork, "cat /work/f; echo $MARK").output == "base\nkept\n"
            sh(fork, "echo fork > /work/f")
            assert sh(other, "cat /work/f").output == "base\n"  # forks are independent
    finally:
        backend.delete_snapshot(snap)  # closes the fork restored for the next take
    assert backend.ahead.ready() == 0
    assert _paused(backend, api) == []
