"""Containers started ahead of time on the runc path: a hand-out is a handle, not a start.

A started-ahead fork runs its shell (idle, in the snapshot's state) and nothing else until it
is handed out; then it sees exactly the snapshot's files, writes to its own upper directory,
behaves as a cold fork does (same pids), and nothing of it is left after it is closed, dropped
as idle, or found dead. Real runc, real overlay mounts, real Docker images.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker_env import sh, start
from needs import unavailable
from runc_env import CLEAN, leftovers

from sandbox import RootSpec, _runc
from sandbox._runc_runtime import _kill
from sandbox.docker import DockerBackend
from snapshots import SnapshotHandle
from tvcache._engine import Engine
from tvcache._policy import AlwaysSnapshot
from tvcache._store import Store
from tvcache.pool import PreforkPool

pytestmark = pytest.mark.docker

PROBE = "pwd; echo $V; cat f; ls; echo $$; sh -c 'echo $$'"
"""The snapshot's cwd, env and files, and the pids a fork gives (a function of history)."""


def _snapshot(backend: DockerBackend) -> SnapshotHandle:
    with start(backend) as source:
        sh(source, "mkdir -p /work/d && cd /work/d && export V=1 && echo x > f && true")
        return source.snapshot("s1")


def test_a_handed_out_fork_was_started_ahead_and_is_a_cold_fork_s_equal(
    runc_backend: Any,
) -> None:
    backend = runc_backend()
    runc = backend.runc
    assert runc is not None
    handle = _snapshot(backend)
    with backend.fork(handle) as cold:
        expected = sh(cold, PROBE).output
    assert backend.prefork(handle, 2) == 2
    waiting = [entry.box for entries in runc._prepared.values() for entry in entries]
    for box in waiting:  # running, shell idle, and no call has written anything
        assert (_runc.state(box.name) or {}).get("status") == "running"
        assert list(box.upper.iterdir()) == []
    assert backend.preforked()["count"] == 2 and backend.preforked()["bytes"] > 0
    with backend.fork(handle) as fork, backend.fork(handle) as sibling:
        assert fork.box in waiting and sibling.box in waiting  # handed over, not started
        assert fork.box is not None and fork.box.phases == {}
        assert sh(fork, PROBE).output == expected
        sh(fork, "echo mine > f && echo new > g")
        assert sh(sibling, PROBE).output == expected  # its own upper directory
        assert (fork.box.upper / "work/d/g").read_text() == "new\n"
    assert backend.preforked()["count"] == 0
    with backend.fork(handle) as again:  # the snapshot itself is untouched
        assert sh(again, PROBE).output == expected
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


def test_idle_dead_and_orphaned_started_ahead_forks_leave_nothing(runc_backend: Any) -> None:
    backend = runc_backend()
    handle = _snapshot(backend)
    assert backend.prefork(handle, 2) == 2
    assert backend.shrink_preforked(3600) == 0
    assert backend.shrink_preforked(0) == 2  # waited too long: removed
    assert backend.prefork(handle, 1) == 1
    runc = backend.runc
    assert runc is not None
    (dead,) = [entry.box for entries in runc._prepared.values() for entry in entries]
    _kill(dead.pid)  # SIGKILL, and wait until it is dead
    with backend.fork(handle) as fork:  # the dead one is skipped and removed
        assert fork.box is not dead
        assert sh(fork, "cat f").output == "x\n"
    assert backend.prefork(handle, 1) == 1
    backend.delete_snapshot(handle)  # the one still waiting goes with its snapshot
    assert leftovers(backend) == CLEAN


def test_the_pool_keeps_started_forks_within_its_size(runc_backend: Any, tmp_path: Path) -> None:
    backend = runc_backend()
    engine = Engine(backend, Store(f"sqlite:///{tmp_path / 'cache.db'}"), policy=AlwaysSnapshot())
    with engine.session(RootSpec("t", backend="docker")) as session:
        node = engine.graph.get(session.call("bash", command="echo a > log").node_id)
    assert node is not None and node.snapshot is not None
    pool = PreforkPool(engine, hot_misses=1, per_node=3, max_size=2)
    engine.pool = pool
    try:
        pool.note_miss(node)
        assert pool.settle()
        stats = pool.stats()  # per_node would allow 3: the pool's size holds it at 2
        assert (stats["ready"], stats["preforked"]) == (0, 2), stats
        assert stats["preforked_bytes"] > 0
        with backend.fork(node.snapshot) as fork:  # a hand-out
            assert sh(fork, "cat log").output == "a\n"
        assert pool.stats()["preforked"] == 1
        pool.note_miss(node)  # refilled, within the size
        assert pool.settle()
        assert pool.stats()["preforked"] == 2
    finally:
        engine.close()
        assert engine.store is not None
        engine.store.close()
    assert backend.preforked()["count"] == 0  # closing the pool removed them
    assert leftovers(backend)["containers"] == []


@pytest.mark.parametrize("oci", ["runc", "crun"])
def test_a_container_another_process_is_still_making_is_not_there_yet(oci: str) -> None:
    """Another tvcache process's container whose state directory exists without its state
    file (being created or deleted right now): nobody else lists it, asks its state or fails."""
    if shutil.which(oci) is None:
        unavailable(f"the OCI runtime {oci}: sh scripts/install-crun.sh (runc comes with Docker)")
    name = f"tvcache-half-made-{uuid.uuid4().hex[:8]}"
    half = _runc.STATE_ROOTS[oci] / name
    half.mkdir(parents=True)
    try:
        assert name not in _runc.containers()
        assert _runc.state(name) is None
    finally:
        shutil.rmtree(half)
