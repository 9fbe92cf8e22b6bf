"""The runc path's ``fs`` snapshots: stacked layers, sharing, flattening, garbage collection
and what is left after a run (nothing). Real runc, real overlay mounts, real Docker images."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from docker_env import sh, start
from runc_env import CLEAN, leftovers

from sandbox import RootSpec
from snapshots import SnapshotHandle
from tvcache._engine import Engine
from tvcache._policy import AlwaysSnapshot
from tvcache._store import Store
from tvcache.pool import PreforkPool

pytestmark = pytest.mark.docker


def test_a_fork_sees_its_source_at_snapshot_time_and_not_later(runc_backend: Any) -> None:
    backend = runc_backend()
    with start(backend) as source:
        sh(source, "echo one > a && rm /etc/issue && mkdir d && echo x > d/x && cd d")
        handle = source.snapshot("s1")
        assert handle.meta["runtime"] == "runc"
        sh(source, "echo two > ../a && echo later > ../b && rm x && touch /etc/issue")
        with backend.fork(handle) as fork:
            out = sh(fork, "pwd; cat ../a x; ls ../b /etc/issue 2>&1 | wc -l; ls /etc/issue")
            assert out.output.splitlines()[:4] == ["/work/d", "one", "x", "2"]
            assert out.exit_code != 0  # /etc/issue stays deleted (a whiteout in a lower layer)
        assert sh(source, "cat ../a ../b; ls x 2>&1").output.startswith("two\nlater\nls:")
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


def test_sibling_forks_are_isolated(runc_backend: Any) -> None:
    backend = runc_backend()
    with start(backend) as source:
        sh(source, "echo base > f")
        handle = source.snapshot("s1")
        with backend.fork(handle) as left, backend.fork(handle) as right:
            sh(left, "echo left >> f && echo l > only-left")
            sh(right, "echo right >> f && rm f && echo r > only-right")
            assert sh(left, "cat f; ls").output == "base\nleft\nf\nonly-left\n"
            assert sh(right, "ls").output == "only-right\n"
            assert sh(source, "cat f; ls").output == "base\nf\n"
            with backend.fork(handle) as third:
                assert sh(third, "cat f; ls").output == "base\nf\n"
    backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


def test_layer_bytes_are_counted_once(runc_backend: Any) -> None:
    backend = runc_backend()
    with start(backend) as source:
        sh(source, "head -c 3M /dev/urandom > big")
        first = source.snapshot("s1")
        assert 3 << 20 <= first.size_bytes < 4 << 20
        with backend.fork(first) as fork:
            sh(fork, "echo small > f")
            second = fork.snapshot("s2")  # stacked on s1: its bytes are s1's, not again here
            assert second.size_bytes < 1 << 20
            assert sh(fork, "wc -c < big").output == f"{3 << 20}\n"
    for handle in (first, second):
        backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


def test_deep_chains_are_flattened_in_the_background(runc_backend: Any) -> None:
    backend = runc_backend(flatten_depth=3)
    runc = backend.runc
    assert runc is not None
    handles: list[SnapshotHandle] = []
    with start(backend) as source:
        for step in range(7):
            sh(source, f"echo {step} >f{step}; echo {step} >>all; rm -f f{step - 2} /etc/issue")
            sh(source, f"mkdir -p d{step}")
            if step == 3:
                sh(source, "rm -rf d1 && mkdir d1 && echo new > d1/n")  # an opaque directory
            handles.append(source.snapshot(f"s{step}"))
        runc.drain()
        deepest = handles[-1]
        stack = runc.stack_of(deepest.meta["layer"])
        assert len(stack) <= 3, stack
        listing = "ls -R /work | sort; cat /work/all /work/d1/n; ls /etc/issue"
        expected = sh(source, listing).output
        with backend.fork(deepest) as fork:
            assert sh(fork, listing).output == expected
        with backend.fork(handles[2]) as older:  # an earlier snapshot of the chain is intact
            assert sh(older, "cat /work/all; ls /work/f0 2>&1 | wc -l").output == "0\n1\n2\n1\n"
    for handle in handles:
        backend.delete_snapshot(handle)
    assert leftovers(backend) == CLEAN


def test_gc_keeps_layers_others_need_and_removes_the_rest(runc_backend: Any) -> None:
    backend = runc_backend()
    runc = backend.runc
    assert runc is not None
    with start(backend) as source:
        sh(source, "echo 1 > f")
        s1 = source.snapshot("s1")
        sh(source, "echo 2 > g")
        s2 = source.snapshot("s2")  # stacked on s1's layer
    fork = backend.fork(s1)
    backend.delete_snapshot(s1)
    runc.drain()
    assert runc.layers.has(s1.meta["layer"])  # s2 and the fork stand on it
    backend.delete_snapshot(s2)
    runc.drain()
    assert runc.layers.layers() == [s1.meta["layer"]]  # the fork still reads it
    assert sh(fork, "cat f; ls").output == "1\nf\n"
    fork.close()
    assert leftovers(backend) == CLEAN


def test_reconcile_removes_what_a_dead_process_left(runc_backend: Any, tmp_path: Path) -> None:
    backend = runc_backend()
    runc = backend.runc
    assert runc is not None
    box = start(backend)
    sh(box, "echo x > f")
    kept = box.snapshot("kept")
    orphan = box.snapshot("orphan")  # no record will name it
    assert box.init_pid > 0  # the source has moved on to its new container
    owner = runc.boxes / box.container_id / "owner.json"
    labels = json.loads(owner.read_text())
    owner.write_text(json.dumps({**labels, "tvcache.pid": str(2**22 + 1)}))  # its creator died
    name = box.container_id
    # a later process reconciles (layers a minute old or younger stay: age them)
    for layer in runc.layers.layers():
        os.utime(runc.layers.root / layer, (0, 0))
    report = backend.reconcile({"kept": kept})
    assert f"container:{name}" in report.orphans_removed
    assert f"layer:{orphan.meta['layer']}" in report.orphans_removed
    assert report.missing == []
    assert runc.layers.has(kept.meta["layer"])
    with backend.fork(kept) as fork:
        assert sh(fork, "cat f").output == "x\n"
    box.close()
    backend.delete_snapshot(kept)
    assert leftovers(backend) == CLEAN


def test_a_fork_takes_a_container_created_ahead_of_time(runc_backend: Any) -> None:
    backend = runc_backend()
    with start(backend) as source:
        sh(source, "cd /tmp && export V=1 && echo x > f")
        handle = source.snapshot("s1")
    assert backend.prefork(handle, 2) == 2
    with backend.fork(handle) as fork:
        assert fork.box is not None and "runc_create" not in fork.box.phases  # only started
        assert sh(fork, "pwd; echo $V; cat f").output == "/tmp\n1\nx\n"
    backend.delete_snapshot(handle)  # and the one still waiting goes with it
    assert leftovers(backend) == CLEAN


def test_the_pool_creates_containers_at_hot_snapshots(runc_backend: Any, tmp_path: Path) -> None:
    backend = runc_backend()
    engine = Engine(backend, Store(f"sqlite:///{tmp_path / 'cache.db'}"), policy=AlwaysSnapshot())
    pool = PreforkPool(engine, hot_misses=1, per_node=1)
    engine.pool = pool
    spec = RootSpec("t", backend="docker")
    try:
        for branch in range(3):
            with engine.session(spec) as session:
                session.call("bash", command="echo a > log")
                assert pool.settle()
                got = session.call("bash", command=f"echo {branch} >> log; cat log")
                assert got.output == f"a\n{branch}\n" and not got.hit
        assert backend.runc is not None and backend.runc.prepared_total() == 1
    finally:
        engine.close()
        assert engine.store is not None
        engine.store.close()
    assert backend.runc.prepared_total() == 0  # closing the pool removed them
