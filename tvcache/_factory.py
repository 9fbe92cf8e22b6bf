"""Ready-made engines: a backend, a store and settings wired together."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeGuard

from sandbox import Backend, LocalTool, ToolSpec
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._policy import EvictionStrategy, SnapshotPolicy
from tvcache._pool import SandboxPool
from tvcache._settings import Settings
from tvcache._store import Store

if TYPE_CHECKING:
    from sandbox.docker import DockerBackend
    from sandbox.local import LocalBackend
    from tvcache.adapters._host import HostTool

    AnyTool = LocalTool | HostTool

BACKENDS = ("local", "docker")


def local_backend(settings: Settings, tools: Iterable[LocalTool] = ()) -> LocalBackend:
    """The local backend with its snapshots and sandboxes under ``settings.home``."""
    from sandbox.local import LocalBackend

    return LocalBackend(
        snapshot_dir=settings.snapshot_dir, work_dir=settings.sandbox_dir, tools=tools
    )


def docker_backend(
    settings: Settings, level: str = "fs", tools: Iterable[LocalTool] = (), restore_ahead: int = 0
) -> DockerBackend:
    """The Docker backend at snapshot ``level``, its store under ``settings.home``;
    ``restore_ahead`` forks of each hot ``full`` snapshot kept restored (see DockerBackend)."""
    from sandbox.docker import DockerBackend

    if level not in ("fs", "full"):
        raise TvcacheError(f"unknown snapshot level {level!r}", "use 'fs' or 'full'")
    return DockerBackend(
        settings.snapshot_dir,
        level,  # type: ignore[arg-type]
        work_dir=settings.sandbox_dir,
        tools=tools,
        restore_ahead=restore_ahead,
    )


def make_backend(
    settings: Settings,
    backend: str = "local",
    *,
    level: str = "fs",
    tools: Iterable[LocalTool] = (),
) -> Backend:
    """The backend named ``backend`` with ``tools`` beside ``bash`` and ``sqlite``; ``level``
    is the Docker backend's snapshot level."""
    if backend == "local":
        return local_backend(settings, tools)
    if backend == "docker":
        return docker_backend(settings, level, tools)
    raise TvcacheError(f"unknown backend {backend!r}", f"use one of: {', '.join(BACKENDS)}")


def open_engine(
    settings: Settings | None = None,
    *,
    tools: Iterable[AnyTool] = (),
    backend: str = "local",
    policy: SnapshotPolicy | None = None,
    eviction: EvictionStrategy | None = None,
    persist: bool = True,
    level: str = "fs",
    pool: Callable[[Engine], SandboxPool] | None = None,
) -> Engine:
    """An engine on ``backend`` with its store at ``settings.resolved_store_url()``.

    ``tools`` join ``bash`` and ``sqlite`` (a same-named one replaces a built-in): instances of
    :class:`~tvcache.ShellTool` or :class:`~tvcache.LocalTool`, or :func:`~tvcache.tool`
    functions; see docs/tools.md. Host tools (a ``spec`` and ``run(args)``, such as
    :func:`~tvcache.adapters.skyrl.skyrl_tools`) run in this process, not in a sandbox.

    ``persist=False`` keeps the graph in memory only (benchmarks, throwaway runs); ``level``
    is the Docker backend's snapshot level (``fs`` or ``full``); ``pool`` makes the engine's
    pool of pre-forked sandboxes, e.g. ``lambda e: PreforkPool(e, max_size=8)``.
    """
    settings = settings or Settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    chosen = backend_with_tools(settings, backend, level, tools)
    store = Store(settings.resolved_store_url()) if persist else None
    engine = Engine(
        chosen, store, settings=settings, policy=policy, eviction=eviction, owns_store=True
    )
    if pool is not None:
        engine.pool = pool(engine)
    return engine


def is_host_tool(item: object) -> TypeGuard[HostTool]:
    """A tool run in the engine's process (a ``spec`` and ``run(args)``), not a sandbox tool."""
    return (
        not isinstance(item, LocalTool)
        and isinstance(getattr(item, "spec", None), ToolSpec)
        and callable(getattr(item, "run", None))
    )


def backend_with_tools(
    settings: Settings, backend: str = "local", level: str = "fs", tools: Iterable[AnyTool] = ()
) -> Backend:
    """``make_backend`` with the sandbox tools, wrapped to run the host tools in this process."""
    from tvcache.adapters._host import HostToolsBackend

    tools = list(tools)
    host = [t for t in tools if is_host_tool(t)]
    local = [t for t in tools if isinstance(t, LocalTool)]
    chosen = make_backend(settings, backend, level=level, tools=local)
    return HostToolsBackend(chosen, host) if host else chosen


def load_tools(specs: Sequence[str]) -> list[AnyTool]:
    """The tools named by ``package.module:factory`` strings (``--tools`` of the CLI).

    ``factory`` is a tool (a ``@tool`` function or a tool instance), a tool class, or a
    function that returns one tool or a list of them. Host tools (a ``spec`` and
    ``run(args)``, e.g. :func:`~tvcache.adapters.skyrl.skyrl_tools`) are the operator's own
    trusted code: they run in the engine's process, unisolated, as the framework runs them.
    """
    found: list[AnyTool] = []
    for spec in specs:
        module_name, sep, attribute = spec.partition(":")
        hint = "name it as package.module:factory, e.g. --tools myproject.tools:make_tools"
        if not sep or not module_name or not attribute:
            raise TvcacheError(f"--tools {spec!r} is not of the form package.module:factory", hint)
        try:
            target: object = importlib.import_module(module_name)
            for part in attribute.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as error:
            raise TvcacheError(f"--tools {spec!r}: cannot load it: {error}", hint) from error
        if (isinstance(target, type) and issubclass(target, LocalTool)) or (
            not isinstance(target, LocalTool) and callable(target)
        ):
            target = target()
        made = list(target) if isinstance(target, list | tuple) else [target]
        tools = [t for t in made if isinstance(t, LocalTool) or is_host_tool(t)]
        bad = [t for t in made if not (isinstance(t, LocalTool) or is_host_tool(t))]
        if bad:
            raise TvcacheError(
                f"--tools {spec!r} gave {bad[0]!r}, which is not a tool",
                "return ShellTool/LocalTool instances or @tool functions (docs/tools.md)",
            )
        found.extend(tools)
    return found
