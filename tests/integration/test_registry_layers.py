"""Layer stacks through a real registry (``docker-registry``), without containers: a pulled
stack shows exactly what the pushed one showed, through real overlay mounts; shared layers
go up once; a corrupt blob is refused and leaves nothing; the registry budget evicts the least
recently used snapshot and garbage collection frees its bytes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from registry_env import RegistryServer, registry_server  # noqa: F401  (fixture)
from test_layer_merge import Op, apply, layers, mounted, root, tree  # noqa: F401  (fixture)

from snapshots import SnapshotError
from snapshots import _registry_stack as stack
from snapshots._registry_sync import RegistrySync
from snapshots.layers import LayerStore
from snapshots.registry import DigestMismatchError, Registry


def freeze(store: LayerStore, files: dict[str, bytes], below: list[str], where: Path) -> str:
    upper = where / f"upper-{len(store.layers())}"
    upper.mkdir()
    for name, body in files.items():
        (upper / name).parent.mkdir(parents=True, exist_ok=True)
        (upper / name).write_bytes(body)
    return store.freeze(upper, below)


def in_place(store: LayerStore) -> list[str]:
    """Layer directories and leftovers of an unfinished pull (``.tmp-*``)."""
    return sorted(e.name for e in store.root.iterdir())


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=layers)
def test_a_pulled_stack_shows_what_the_pushed_stack_showed(
    root: None,  # noqa: F811
    registry_server: RegistryServer,  # noqa: F811
    ops: list[list[Op]],
) -> None:
    registry = Registry(registry_server.url)
    with tempfile.TemporaryDirectory(prefix="tvcache-registry-") as temp:
        where = Path(temp)
        image = where / "image"
        (image / "d" / "f").mkdir(parents=True)
        (image / "a").write_text("image a\n")
        (image / "d" / "c").write_text("image c\n")
        home, away = LayerStore(where / "home"), LayerStore(where / "away")
        below: list[str] = []  # the stack so far, top first
        for index, layer_ops in enumerate(ops):
            with mounted(where, [*map(home.diff, below), image], f"w{index}") as view:
                for op in layer_ops:
                    apply(view, op)
            top = home.freeze(where / f"mnt-w{index}" / "upper", below)
            below = home.chain(top)
        stack.push(registry, home, top, "s", "image")
        stack.pull(registry, away, "s")
        assert away.chain(top) == below
        pushed = [home.diff(x) for x in below]
        pulled = [away.diff(x) for x in away.chain(top)]
        with (
            mounted(where, [*pushed, image], "home") as before,
            mounted(where, [*pulled, image], "away") as after,
        ):
            assert tree(after) == tree(before)
    registry.close()


def test_a_layer_shared_by_snapshots_is_uploaded_once(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = LayerStore(tmp_path / "layers")
    registry = Registry(registry_server.url)
    base = freeze(store, {"big": os.urandom(1 << 20)}, [], tmp_path)
    left = freeze(store, {"l": b"left"}, store.chain(base), tmp_path)
    right = freeze(store, {"r": b"right"}, store.chain(base), tmp_path)
    for tag, layer in (("base", base), ("left", left), ("right", right)):
        stack.push(registry, store, layer, tag, "image")
    # three layers and three configs: six blobs, each uploaded once (base is in every stack)
    assert registry_server.requests("PUT", "/blobs/uploads/") == 6
    assert registry_server.requests("PATCH", "/blobs/uploads/") == 6
    assert sorted(registry.tags()) == ["base", "left", "right"]


def test_a_corrupt_blob_is_refused_and_leaves_nothing(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    home, away = LayerStore(tmp_path / "home"), LayerStore(tmp_path / "away")
    registry = Registry(registry_server.url)
    bottom = freeze(home, {"a": b"intact " * 1000}, [], tmp_path)
    top = freeze(home, {"b": b"will rot " * 1000}, home.chain(bottom), tmp_path)
    stack.push(registry, home, top, "s", "image")
    blobs = registry_server.data / "docker" / "registry" / "v2" / "blobs"
    rotten = next(p for p in blobs.rglob("data") if b"will rot" in p.read_bytes())
    body = bytearray(rotten.read_bytes())
    body[-2000] ^= 0xFF  # one flipped byte, inside the file's contents
    rotten.write_bytes(bytes(body))
    with pytest.raises(DigestMismatchError):
        stack.pull(registry, away, "s")
    assert in_place(away) == [bottom]  # the intact lower layer is whole; nothing else
    with pytest.raises(SnapshotError):
        away.chain(top)


def test_a_snapshot_the_registry_lacks_is_gone(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    sync = RegistrySync(Registry(registry_server.url), LayerStore(tmp_path / "layers"))
    with pytest.raises(SnapshotError, match="neither on this host nor in"):
        sync.ensure("never-pushed", "0123456789abcdef0123")
    sync.close()


def test_the_registry_budget_evicts_the_least_recently_used_and_gc_frees_it(
    registry_server: RegistryServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = LayerStore(tmp_path / "layers")
    sync = RegistrySync(
        Registry(registry_server.url),
        store,
        budget_bytes=int(2.75 * (1 << 20)),  # shared + two of the three
        gc_config=registry_server.config,
    )
    shared = freeze(store, {"shared": os.urandom(1 << 19)}, [], tmp_path)
    layers = {}
    for tag in ("old", "used", "new"):
        layers[tag] = freeze(store, {tag: os.urandom(1 << 20)}, store.chain(shared), tmp_path)
    sync.push_later("old", layers["old"], "image")
    sync.push_later("used", layers["used"], "image")
    sync.drain()
    sync.ensure("old", layers["old"])  # a fork of "old": now "used" is the least recent
    before = registry_server.stored_bytes()
    sync.push_later("new", layers["new"], "image")  # 3.5 MiB of layers: over budget
    sync.drain()
    assert sorted(sync.registry.tags()) == ["new", "old"]
    assert sync.counters["evictions"] == 1
    freed = before + (1 << 20) - registry_server.stored_bytes()  # "new" came, "used" went
    assert (1 << 20) <= freed < (1 << 20) + 64 * 1024
    # the shared layer stays (other snapshots reference it); "used"'s own layer is gone
    away = LayerStore(tmp_path / "away")
    stack.pull(sync.registry, away, "old")
    with pytest.raises(SnapshotError):
        stack.pull(sync.registry, away, "used")
    sync.close()
