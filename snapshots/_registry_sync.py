"""A backend's link to the registry: push each layer snapshot in the background, pull on demand.

Pushing never slows a snapshot: it is queued on one worker thread (in order, so a stack's
lower layers are usually up already when a later snapshot over them is pushed). A fork whose
layers are not on this host pulls them first; a snapshot the registry lacks (never pushed,
push not finished, evicted) raises the ``SnapshotError`` a missing snapshot always raises,
and the engine forks an ancestor and replays. Recency (pushes, forks, pulls) is what the
registry budget's LRU orders by.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from snapshots import _checkpoint_blob as checkpoints
from snapshots import _registry_budget as budget
from snapshots import _registry_images as images
from snapshots import _registry_stack as stack
from snapshots._background import Background
from snapshots._errors import SnapshotError
from snapshots.docker_fs import DockerAPI, is_not_found
from snapshots.layers import LayerStore
from snapshots.registry import BlobMissingError, Registry

log = logging.getLogger(__name__)


class RegistrySync:
    """Pushes and pulls the layer snapshots of one :class:`LayerStore` (runc path) and the
    snapshot images of one Docker daemon (Docker path, ``api``)."""

    def __init__(
        self,
        registry: Registry,
        layers: LayerStore | None = None,
        *,
        api: DockerAPI | None = None,
        budget_bytes: int | None = None,
        gc_config: Path | None = None,
    ) -> None:
        self.registry = registry
        self.images = registry.at(images.IMAGES)
        self.checkpoints = registry.at(checkpoints.CHECKPOINTS)
        self.layers = layers
        self.api = api
        self.budget_bytes = budget_bytes
        self.gc_config = gc_config
        self.counters: dict[str, float] = dict.fromkeys(
            (
                "pushes",
                "push_failures",
                "blobs_pushed",
                "bytes_pushed",
                "push_seconds",
                "pulls",
                "blobs_pulled",
                "bytes_pulled",
                "pull_seconds",
                "evictions",
            ),
            0,
        )
        self.last_used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pulling: dict[str, threading.Lock] = {}
        self._background = Background(1, "tvcache-registry")

    def meta(self) -> dict[str, str]:
        """What a snapshot handle records: it is (being) pushed there."""
        return {"url": self.registry.url, "repository": self.registry.repository}

    def touch(self, tag: str) -> None:
        with self._lock:
            self.last_used[tag] = time.time()

    def _add(self, transfer: stack.Transfer, kind: str) -> None:
        """Count a push (``kind`` "push") or a pull ("pull")."""
        with self._lock:
            self.counters[f"{kind}{'es' if kind == 'push' else 's'}"] += 1
            self.counters[f"blobs_{kind}ed"] += transfer.blobs
            self.counters[f"bytes_{kind}ed"] += transfer.bytes
            self.counters[f"{kind}_seconds"] += transfer.seconds

    # ------------------------------------------------------------------ push
    def push_later(self, tag: str, layer: str, image: str) -> Future[Any]:
        """Queue the push of snapshot ``tag`` (the stack of ``layer``)."""
        layers = self.layers
        assert layers is not None
        return self._later(tag, lambda: stack.push(self.registry, layers, layer, tag, image))

    def push_image_later(self, tag: str, local: str) -> Future[Any]:
        """Queue the push of snapshot ``tag``'s committed image ``local`` (Docker path)."""
        api = self.api
        assert api is not None

        def push() -> stack.Transfer:
            started = time.perf_counter()
            images.push(api, self.images, local, tag)
            return stack.Transfer(1, 0, 0, time.perf_counter() - started)

        return self._later(tag, push)

    def push_checkpoint_later(self, tag: str, store: Path, name: str) -> Future[Any]:
        """Queue the push of snapshot ``tag``'s checkpoint directory ``store/name`` (``full``)."""
        return self._later(tag, lambda: checkpoints.push(self.checkpoints, store, name, tag))

    def _later(self, tag: str, push: Callable[[], stack.Transfer]) -> Future[Any]:
        self.touch(tag)
        return self._background.submit(self._push, tag, push)

    def _push(self, tag: str, push: Callable[[], stack.Transfer]) -> None:
        """Run one queued push, count it, then hold the budget; a failure is logged."""
        try:
            self._add(push(), "push")
        except Exception as error:  # the snapshot went meanwhile, the registry is down
            log.warning("push of snapshot %s to %s failed: %s", tag, self.registry, error)
            with self._lock:
                self.counters["push_failures"] += 1
            return
        if self.budget_bytes is not None:
            self.enforce()

    def drain(self, timeout: float = 600.0) -> None:
        """Wait for queued pushes (tests, benchmarks, close)."""
        self._background.drain(timeout)

    # ------------------------------------------------------------------ pull
    def ensure(self, tag: str, layer: str) -> stack.Transfer | None:
        """Make the stack of snapshot ``tag`` (top layer ``layer``) local; what a pull moved,
        None when it was here already. One pull per snapshot at a time."""
        layers = self.layers
        assert layers is not None
        return self._ensure(
            tag, lambda: layers.has(layer), lambda: stack.pull(self.registry, layers, tag)
        )

    def ensure_image(self, tag: str, local: str) -> stack.Transfer | None:
        """Make snapshot ``tag``'s image ``local`` (``repository:tag``) exist on this daemon."""
        api = self.api
        assert api is not None

        def present() -> bool:
            try:
                api.inspect_image(local)
            except Exception as error:
                if is_not_found(error):
                    return False
                raise
            return True

        def pull() -> stack.Transfer:
            started = time.perf_counter()
            images.pull(api, self.images, tag, local)
            return stack.Transfer(1, 0, 0, time.perf_counter() - started)

        return self._ensure(tag, present, pull)

    def ensure_checkpoint(self, tag: str, store: Path, name: str) -> stack.Transfer | None:
        """Make snapshot ``tag``'s checkpoint directory ``store/name`` exist on this host."""
        return self._ensure(
            tag,
            lambda: (store / name).is_dir(),
            lambda: checkpoints.pull(self.checkpoints, store, name, tag),
        )

    def _ensure(
        self, tag: str, present: Callable[[], bool], pull: Callable[[], stack.Transfer]
    ) -> stack.Transfer | None:
        self.touch(tag)
        if present():
            return None
        with self._lock:
            gate = self._pulling.setdefault(tag, threading.Lock())
        with gate:
            if present():
                return None
            try:
                transfer = pull()
            except BlobMissingError as error:
                raise SnapshotError(
                    f"snapshot {tag} is neither on this host nor in {self.registry.url}",
                    "tvcache forks an earlier snapshot and replays",
                ) from error
        self._add(transfer, "pull")
        return transfer

    # ---------------------------------------------------------------- budget
    def enforce(self) -> budget.Eviction | None:
        """Hold the registry budget (if any); GC the registry when it runs here."""
        if self.budget_bytes is None:
            return None
        with self._lock:
            recency = dict(self.last_used)
        report = budget.enforce(
            [self.registry, self.images, self.checkpoints], self.budget_bytes, recency
        )
        with self._lock:
            self.counters["evictions"] += len(report.evicted)
        if report.evicted and self.gc_config is not None:
            budget.garbage_collect(self.gc_config)
        return report

    def close(self) -> None:
        self.drain()
        self._background.shutdown()
        self.registry.close()
        self.images.close()
        self.checkpoints.close()
