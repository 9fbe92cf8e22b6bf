"""Snapshots across hosts: a snapshot taken by one backend (home A) is forked by another (home B,
its own layer store) through a real registry, after the local copy is deleted; real runc
sandboxes, real overlay mounts, real ``docker-registry``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from docker_env import BackendFactory, assert_no_runc_left, sh, start
from needs import unavailable
from registry_env import RegistryServer, registry_server  # noqa: F401  (fixture)

from sandbox import RootSpec, _runc
from sandbox.docker import DockerBackend
from snapshots import SnapshotError
from tvcache._engine import Engine
from tvcache._policy import AlwaysSnapshot
from tvcache._store import Store

pytestmark = pytest.mark.docker

LISTING = (
    "cd / && find work etc root -xdev ! -path etc/hostname ! -path etc/hosts "
    "! -path etc/resolv.conf -printf '%p %m %U:%G %s %l\\n' | sort | sha256sum; "
    "cat /work/app/config /work/app/lib/data | sha256sum; ls /etc/issue 2>&1 | wc -l; "
    "cd /work/app && pwd && echo $BUILT"
)


@pytest.fixture
def hosts(api: Any, tmp_path: Path, registry_server: RegistryServer) -> Iterator[Any]:  # noqa: F811
    """Backends with their own stores (as on two hosts) sharing one registry; closed and
    checked clean afterwards."""
    reason = _runc.available()
    if reason is not None:
        unavailable(f"the runc path: {reason}")
    made: list[DockerBackend] = []

    def make(name: str, **kwargs: Any) -> DockerBackend:
        backend = DockerBackend(
            tmp_path / name / "snapshots",
            "fs",
            api=api,
            runtime="runc",
            registry=registry_server.url,
            default_timeout=60,
            **kwargs,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
        assert backend.registry is not None
        backend.registry.close()
    assert_no_runc_left(tmp_path)


def test_a_snapshot_from_home_a_forks_on_home_b_through_the_registry(
    hosts: Any,
    registry_server: RegistryServer,  # noqa: F811
) -> None:
    home_a, home_b = hosts("a"), hosts("b")
    with start(home_a) as source:
        sh(source, "mkdir -p /work/app/lib && head -c 2M /dev/urandom > /work/app/lib/data")
        sh(source, "echo v1 > /work/app/config && ln -s lib/data /work/app/link && rm /etc/issue")
        first = source.snapshot("s1")
        sh(source, "rm -rf /work/app/lib && mkdir /work/app/lib && echo new > /work/app/lib/data")
        sh(source, "chmod 4750 /work/app/config && cd /work/app && export BUILT=yes")
        second = source.snapshot("s2")  # stacked on s1's layer
        expected = sh(source, LISTING).output
    assert home_a.registry is not None
    home_a.registry.drain()
    # s1: its layer and config; s2: its own layer and config (s1's layer is not sent again)
    assert registry_server.requests("PUT", "/blobs/uploads/") == 4
    assert second.meta["registry"]["url"] == registry_server.url
    for handle in (first, second):
        home_a.delete_snapshot(handle)
    assert home_a.runc is not None
    home_a.runc.drain()  # the source's container is removed in the background
    home_a.runc.gc()
    assert home_a.runc.layers.layers() == []

    with home_b.fork(second) as fork:  # pulled: B never had it
        assert sh(fork, LISTING).output == expected
        assert sh(fork, "echo $((6 * 7)) && touch /work/writable && ls /work").output == (
            "42\napp\nwritable\n"
        )
    assert home_b.registry is not None and home_b.registry.counters["pulls"] == 1
    with home_b.fork(second) as again:  # local now: no second pull
        assert sh(again, "cat /work/app/lib/data").output == "new\n"
    assert home_b.registry.counters["pulls"] == 1
    with home_a.fork(first) as back:  # and home A gets its deleted copy back the same way
        assert sh(back, "cat /work/app/config; ls /work/app/lib/data").output == (
            "v1\n/work/app/lib/data\n"
        )


def test_a_snapshot_neither_here_nor_in_the_registry_is_gone(
    hosts: Any,
    registry_server: RegistryServer,  # noqa: F811
) -> None:
    home_a, home_b = hosts("a"), hosts("b")
    with start(home_a) as source:
        sh(source, "echo x > /work/f")
        handle = source.snapshot("s1")
    assert home_a.registry is not None
    home_a.registry.drain()
    assert home_a.registry.registry.delete_manifest("s1")
    with pytest.raises(SnapshotError, match="neither on this host nor in"):
        home_b.fork(handle)
    home_a.delete_snapshot(handle)


def test_a_second_server_on_the_same_store_forks_the_first_ones_snapshot(
    hosts: Any,
    tmp_path: Path,
) -> None:
    """Two engines sharing one store, on two layer stores: the second one's miss below a
    snapshot the first one took forks it through the registry (no start, no replay)."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    spec = RootSpec("registry-task", backend="docker")
    home_a, home_b = hosts("a"), hosts("b")
    first = Engine(home_a, Store(url), policy=AlwaysSnapshot(), owns_store=True)
    try:
        with first.session(spec) as session:
            session.call("bash", command="echo built > /work/out && cd /work && export V=7")
    finally:
        first.close()
    assert home_a.registry is not None
    home_a.registry.drain()
    second = Engine(home_b, Store(url), policy=AlwaysSnapshot(), owns_store=True)
    try:
        with second.session(spec) as session:
            hit = session.call("bash", command="echo built > /work/out && cd /work && export V=7")
            assert hit.hit
            miss = session.call("bash", command="pwd; echo $V; cat out")
            assert (miss.output, miss.hit) == ("/work\n7\nbuilt\n", False)
        stats = second.stats()
        assert (stats.starts, stats.forks, stats.replayed_calls) == (0, 1, 0)
        assert home_b.registry is not None and home_b.registry.counters["pulls"] == 1
    finally:
        second.close()


def test_a_docker_path_snapshot_image_moves_through_the_registry(
    make_backend: BackendFactory,
    api: Any,
    tmp_path: Path,
    registry_server: RegistryServer,  # noqa: F811
) -> None:
    """The Docker path (``docker commit`` images): pushed by the daemon, pulled by a fork on
    another backend after the image is removed here."""
    home_a = make_backend("fs", runtime="docker", registry=registry_server.url)
    home_b = DockerBackend(
        tmp_path / "b" / "snapshots", "fs", api=api, runtime="docker", registry=registry_server.url
    )
    try:
        with start(home_a) as source:
            sh(source, "mkdir -p /work/d && echo docker-path > /work/d/f && rm /etc/issue")
            handle = source.snapshot("d1")
        assert home_a.registry is not None and home_b.registry is not None
        home_a.registry.drain()
        assert home_a.registry.counters["push_failures"] == 0
        home_a.delete_snapshot(handle)
        assert api.images(name=handle.location, quiet=True) == []  # gone here
        # a server starting on the shared store keeps the record: a fork will pull it; one
        # without the registry too (home A's record is A's to judge), but not a record from
        # before homes, which the registry cannot vouch for there
        plain = DockerBackend(tmp_path / "c" / "snapshots", "fs", api=api, registry="")
        assert plain.reconcile({"d1": handle}).missing == []
        homeless = replace(handle, meta={k: v for k, v in handle.meta.items() if k != "home"})
        assert plain.reconcile({"d1": homeless}).missing == ["d1"]
        plain.close()
        assert home_b.reconcile({"d1": handle}).missing == []
        with home_b.fork(handle) as fork:
            assert sh(fork, "cat /work/d/f; ls /etc/issue 2>&1 | wc -l").output == (
                "docker-path\n1\n"
            )
        assert home_b.registry.counters["pulls"] == 1
        home_b.delete_snapshot(handle)
    finally:
        home_b.close()
