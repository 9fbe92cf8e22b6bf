"""The public API is what ``__all__`` says: every public name is exported, every export is
public and exists, and every import the README and the docs show works."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

PACKAGES = ["tvcache", "sandbox", "snapshots", "tvcache.data", "tvcache.adapters", "tvcache.plans"]
"""Packages: what their ``__init__`` imports is their surface."""
MODULES = ["tvcache.client", "tvcache.cluster"]
"""Public modules: what they define (not what they import) is their surface."""
REPO = Path(__file__).resolve().parents[2]


def public_names(module: ModuleType, *, package: bool) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and name != "annotations"  # from __future__ import annotations
        and (package or getattr(value, "__module__", module.__name__) == module.__name__)
    }


@pytest.mark.parametrize(
    ("name", "package"), [(p, True) for p in PACKAGES] + [(m, False) for m in MODULES]
)
def test_all_is_exactly_the_public_names(name: str, package: bool) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what does not exist"
    private = [n for n in exported if n.startswith("_") and n != "__version__"]
    assert private == [], f"{name}.__all__ exports private names"
    unexported = sorted(public_names(module, package=package) - set(exported))
    assert unexported == [], f"public in {name} but not in __all__ (add it, or make it _private)"


def test_the_core_and_the_tool_surface() -> None:
    import tvcache

    assert {
        "Engine",
        "Session",
        "CallResult",
        "Settings",
        "StateAwareness",
        "open_engine",
        "TvcacheError",
        "ShellTool",
        "PythonTool",
        "LocalTool",
        "ToolSandbox",
        "ToolSpec",
        "tool",
        "load_tools",
    } <= set(tvcache.__all__)


IMPORT = re.compile(r"^\s*from (tvcache[\w.]*|sandbox[\w.]*) import \(?([\w, ]+)\)?", re.M)


def documented_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for module, names in IMPORT.findall(path.read_text()):
            found += [(path.name, module, n.strip()) for n in names.split(",") if n.strip()]
    return found


def test_every_import_in_the_readme_and_docs_works() -> None:
    imports = documented_imports()
    assert any(name == "tool" for _doc, _module, name in imports)  # docs/tools.md is read
    broken = [
        (doc, f"from {module} import {name}")
        for doc, module, name in imports
        if not importable(module, name)
    ]
    assert broken == []


def importable(module: str, name: str) -> bool:
    """What ``from module import name`` finds: an attribute, or else a submodule (which the
    statement imports; an attribute only once something imported it, so the check must not
    depend on the order tests run in)."""
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return True
