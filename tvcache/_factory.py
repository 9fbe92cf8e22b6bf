"""Ready-made engines: a backend, a store and settings wired together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sandbox import Backend
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._policy import EvictionStrategy, SnapshotPolicy
from tvcache._pool import SandboxPool
from tvcache._settings import Settings
from tvcache._store import Store

if TYPE_CHECKING:
    from sandbox.docker import DockerBackend
    from sandbox.local import LocalBackend

BACKENDS = ("local", "docker")


def local_backend(settings: Settings) -> LocalBackend:
    """The local backend with its snapshots and sandboxes under ``settings.home``."""
    from sandbox.local import LocalBackend

    return LocalBackend(snapshot_dir=settings.snapshot_dir, work_dir=settings.sandbox_dir)


def docker_backend(settings: Settings, level: str = "fs") -> DockerBackend:
    """The Docker backend at snapshot ``level``, its store under ``settings.home``."""
    from sandbox.docker import DockerBackend

    if level not in ("fs", "full"):
        raise TvcacheError(f"unknown snapshot level {level!r}", "use 'fs' or 'full'")
    return DockerBackend(settings.snapshot_dir, level, work_dir=settings.sandbox_dir)  # type: ignore[arg-type]


def make_backend(settings: Settings, backend: str = "local", *, level: str = "fs") -> Backend:
    """The backend named ``backend``; ``level`` is the Docker backend's snapshot level."""
    if backend == "local":
        return local_backend(settings)
    if backend == "docker":
        return docker_backend(settings, level)
    raise TvcacheError(f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")


def open_engine(
    settings: Settings | None = None,
    *,
    backend: str = "local",
    policy: SnapshotPolicy | None = None,
    eviction: EvictionStrategy | None = None,
    persist: bool = True,
    level: str = "fs",
    pool: Callable[[Engine], SandboxPool] | None = None,
) -> Engine:
    """An engine on ``backend`` with its store at ``settings.resolved_store_url()``.

    ``persist=False`` keeps the graph in memory only (benchmarks, throwaway runs); ``level``
    is the Docker backend's snapshot level (``fs`` or ``full``); ``pool`` makes the engine's
    pool of pre-forked sandboxes, e.g. ``lambda e: PreforkPool(e, max_size=8)``.
    """
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    chosen = make_backend(settings, backend, level=level)
    store = Store(settings.resolved_store_url()) if persist else None
    engine = Engine(chosen, store, settings=settings, policy=policy, eviction=eviction)
    if pool is not None:
        engine.pool = pool(engine)
    return engine
