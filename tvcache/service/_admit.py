"""What an open must pass before anything is stored: a template this server may start from,
options the backend knows, and an ``at_node`` of the same root. A refused open writes nothing.

Templates and paths are on the server's side, so they are checked as the server sees them: an
absolute path (a relative one would depend on the server's working directory), not the file
system root or a virtual file system (``/proc``, ``/sys``, ``/dev``: not files), and clear of
the cache's own directories (a sandbox started from them would copy the store and other
sandboxes, or itself).
"""

from __future__ import annotations

import os
from pathlib import Path

from sandbox import RootSpec
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._keys import root_id
from tvcache.service._errors import BadRoot, NodeNotFound

_VIRTUAL = (Path("/proc"), Path("/sys"), Path("/dev"))
_TEMPLATE_HINT = (
    "pass the absolute path of a directory on the server holding the task's files, "
    "or leave 'template' out for an empty sandbox"
)


def _inside(path: Path, other: Path) -> bool:
    return path == other or other in path.parents


def _private_dirs(engine: Engine) -> list[Path]:
    """The cache's own directories: its home, and the backend's snapshots and sandboxes."""
    found = [engine.settings.home]
    for name in ("snapshot_dir", "work_dir"):
        value = getattr(engine.backend, name, None)
        if isinstance(value, Path):
            found.append(value)
    return [path.expanduser().resolve() for path in found]


def check_template(engine: Engine, template: str | None) -> None:
    """Refuse a local-backend template that is not a plain directory of task files."""
    if template is None:
        return
    if not os.path.isabs(template):
        raise BadRoot(
            f"template {template!r} is not an absolute path: it would depend on the server's "
            "working directory",
            _TEMPLATE_HINT,
            field="template",
        )
    path = Path(template).resolve()
    if path == Path("/") or any(_inside(path, v) for v in _VIRTUAL):
        what = "the file system root" if path == Path("/") else "in a virtual file system"
        raise BadRoot(
            f"template {template!r} is {what}, not a directory of task files",
            _TEMPLATE_HINT,
            field="template",
        )
    for private in _private_dirs(engine):
        if _inside(path, private) or _inside(private, path):
            raise BadRoot(
                f"template {template!r} overlaps this cache's own directory {private}: a "
                "sandbox would copy the store and other sandboxes",
                "keep task templates outside TVCACHE_HOME (and TVCACHE_HOME outside them)",
                field="template",
            )


def _identity(engine: Engine, spec: RootSpec) -> str:
    try:
        return engine.backend.root_identity(spec)
    except OSError as error:
        raise BadRoot(
            f"cannot read template {spec.template!r}: {error.strerror or error}",
            "make the template readable by the server",
            field="template",
        ) from error


def admit(engine: Engine, spec: RootSpec, at_node: str | None) -> str:
    """The id of the root ``spec`` names, checked without writing anything (blocking I/O)."""
    if engine.backend.name == "local":
        check_template(engine, spec.template)
    try:
        rid = root_id(spec, _identity(engine, spec))
    except BadRoot:
        raise
    except TvcacheError as error:
        field = _wrong_field(engine, spec)
        hint = error.hint or (
            f"see the README for the options of the {spec.backend} backend"
            if field == "options"
            else _TEMPLATE_HINT
        )
        raise BadRoot(error.message, hint, field=field) from error
    if at_node is not None and not _cached_node_of(engine, rid, at_node):
        raise NodeNotFound(
            f"node {at_node!r} is not a cached node of this root",
            "pass a node_id this server answered for the same task and template",
            field="at_node",
        )
    return rid


def _wrong_field(engine: Engine, spec: RootSpec) -> str:
    """Which field of a refused spec was wrong: ``options`` if it passes without them."""
    if not spec.options:
        return "template"
    try:
        _identity(engine, RootSpec(spec.task_id, spec.backend, spec.template))
    except TvcacheError:
        return "template"
    return "options"


def _cached_node_of(engine: Engine, rid: str, node_id: str) -> bool:
    """Is ``node_id`` the root or a node with an observation, under root ``rid``?"""
    node = engine.graph.get(node_id)
    if node is not None:
        return node.root_id == rid and (node.parent is None or node.observation is not None)
    record = engine.store.get_node(node_id) if engine.store is not None else None
    return (
        record is not None
        and record.root_id == rid
        and (record.parent_id is None or record.observation is not None)
    )
