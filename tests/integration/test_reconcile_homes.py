"""Servers sharing one store, each with its own snapshot directory (its home): at start-up each
reconciles the records of the whole store, reports its own snapshots whose layers are gone, and
leaves the other home's records alone (they are valid where they were taken). Real runc
sandboxes, real layer stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_env import assert_no_runc_left, sh, start
from needs import unavailable

from sandbox import _runc
from sandbox.docker import DockerBackend

pytestmark = pytest.mark.docker


@pytest.fixture
def homes(api: Any, tmp_path: Path) -> Iterator[Any]:
    reason = _runc.available()
    if reason is not None:
        unavailable(f"the runc path: {reason}")
    made: list[DockerBackend] = []

    def make(name: str) -> DockerBackend:
        backend = DockerBackend(
            tmp_path / name / "snapshots",
            "fs",
            api=api,
            runtime="runc",
            registry="",
            default_timeout=60,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
    assert_no_runc_left(tmp_path)


def test_reconcile_reports_its_own_missing_layers_and_leaves_other_homes_records(
    homes: Any,
) -> None:
    home_a, home_b = homes("a"), homes("b")
    with start(home_a) as source:
        sh(source, "echo a > /work/f")
        kept = source.snapshot("a-kept")
        sh(source, "echo a2 > /work/f")
        gone = source.snapshot("a-gone")
    with start(home_b) as source:
        sh(source, "echo b > /work/f")
        theirs = source.snapshot("b-1")
    assert home_a.runc is not None
    home_a.delete_snapshot(gone)
    home_a.runc.drain()
    assert not home_a.runc.layers.has(gone.meta["layer"])
    store = {"a-kept": kept, "a-gone": gone, "b-1": theirs}  # every record of the shared store
    assert home_a.reconcile(store).missing == ["a-gone"]
    assert home_b.reconcile(store).missing == []  # home A's records are A's to judge
    with home_b.fork(theirs) as fork:  # and B's own record is intact
        assert sh(fork, "cat /work/f").output == "b\n"
    with home_a.fork(kept) as fork:
        assert sh(fork, "cat /work/f").output == "a\n"
    for handle in (kept, theirs):
        (home_a if handle is kept else home_b).delete_snapshot(handle)
