"""The public API is what ``__all__`` says, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["tvcache", "sandbox", "snapshots"])
def test_all_names_exist_and_are_unique(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(module, name), f"{package}.{name} is in __all__ but missing"


def test_core_surface() -> None:
    import tvcache

    assert {"Engine", "Session", "CallResult", "Settings", "open_engine", "TvcacheError"} <= set(
        tvcache.__all__
    )
