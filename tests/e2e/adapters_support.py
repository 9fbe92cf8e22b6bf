"""What the adapter tests share: an engine with extra tools, and the frameworks, or a skip."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from sandbox._tools import LocalTool
from sandbox.local import LocalBackend
from integration.needs import unavailable
from tvcache import Engine, Settings


def framework(module: str, extra: str) -> ModuleType:
    """``module`` imported, or a skip (a failure under CI) naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{module} is not importable ({error}): pip install -e '.[{extra}]'")


def engine_with(home: Path, tools: Iterable[LocalTool] = ()) -> Engine:
    """An in-memory engine on the local backend with ``tools`` added to the built-in ones
    (``open_engine(tools=...)`` once it has that parameter)."""
    settings = Settings(home=home)
    home.mkdir(parents=True, exist_ok=True)
    backend = LocalBackend(settings.snapshot_dir, tools=tools, work_dir=settings.sandbox_dir)
    return Engine(backend, None, settings=settings)
