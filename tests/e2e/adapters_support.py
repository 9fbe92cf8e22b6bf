"""What the adapter tests share: the frameworks, or a skip that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from integration.needs import unavailable


def framework(module: str, extra: str) -> ModuleType:
    """``module`` imported, or a skip (a failure under CI) naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        unavailable(f"{module} is not importable ({error}): pip install -e '.[{extra}]'")
