"""Ready-made engines: a backend, a store and settings wired together."""

from __future__ import annotations

from tvcache._engine import Engine
from tvcache._policy import EvictionStrategy, SnapshotPolicy
from tvcache._settings import Settings
from tvcache._store import Store


def open_engine(
    settings: Settings | None = None,
    *,
    backend: str = "local",
    policy: SnapshotPolicy | None = None,
    eviction: EvictionStrategy | None = None,
    persist: bool = True,
) -> Engine:
    """An engine on ``backend`` with its store at ``settings.resolved_store_url()``.

    ``persist=False`` keeps the graph in memory only (benchmarks, throwaway runs).
    """
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}; this build has: local")
    from sandbox.local import LocalBackend

    local = LocalBackend(snapshot_dir=settings.snapshot_dir, work_dir=settings.sandbox_dir)
    store = Store(settings.resolved_store_url()) if persist else None
    return Engine(local, store, settings=settings, policy=policy, eviction=eviction)
