"""The dashboard's view of a store: root summaries, pages of children, one node in full.

Shared by the live dashboard (``tvcache serve``, tvcache/service/_dashboard.py) and
``tvcache tree ROOT --html FILE``. Each query reads what one screen shows, through the
``parent_id`` and ``root_id`` indexes, so a 100,000-node root opens as fast as a small one.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, make_url

from snapshots import TvcacheError
from tvcache import _schema as schema
from tvcache._engine import RootNotFoundError
from tvcache._records import NodeRecord, SnapshotRecord
from tvcache._settings import Settings, default_home
from tvcache._store import Store

PAGE = 200  # children per page unless asked otherwise
MAX_PAGE = 1000
MAX_OFFSET = 10**9  # past any real tree, within every database's integers
LABEL_CHARS = 160  # a call's text in the tree; the detail shows it whole

_N = schema.nodes
_S = schema.snapshots


class NodeNotFoundError(TvcacheError):
    """A node id the store does not hold (under the root asked for)."""


def root_summaries(store: Store) -> list[dict[str, Any]]:
    """Per root: nodes, calls, hit rate, seconds saved, snapshots and their bytes."""
    flag = case((_N.c.nondeterministic, 1), else_=0)
    per_root = select(
        _N.c.root_id,
        func.count(_N.c.parent_id).label("nodes"),  # the root's own node has no parent
        func.coalesce(func.sum(_N.c.hits), 0).label("hits"),
        func.coalesce(func.sum(_N.c.executions), 0).label("executions"),
        func.coalesce(func.sum(_N.c.seconds_saved), 0.0).label("seconds_saved"),
        func.coalesce(func.sum(_N.c.exec_seconds), 0.0).label("exec_seconds"),
        func.coalesce(func.sum(flag), 0).label("nondeterministic"),
    ).group_by(_N.c.root_id)
    snaps = select(
        _S.c.root_id, func.count().label("n"), func.sum(_S.c.size_bytes).label("bytes")
    ).group_by(_S.c.root_id)
    with store.reading("summarise the roots") as conn:
        counted = {row.root_id: row for row in conn.execute(per_root)}
        snapped = {row.root_id: row for row in conn.execute(snaps)}
    out = []
    for root in store.roots():
        row, snap = counted.get(root.root_id), snapped.get(root.root_id)
        hits = int(row.hits) if row else 0
        calls = hits + (int(row.executions) if row else 0)
        out.append(
            {
                "root_id": root.root_id,
                "task_id": root.spec.task_id,
                "backend": root.spec.backend,
                "template": root.spec.template,
                "created": root.created,
                "nodes": int(row.nodes) if row else 0,
                "calls": calls,
                "hits": hits,
                "hit_rate": hits / calls if calls else 0.0,
                "seconds_saved": float(row.seconds_saved) if row else 0.0,
                "exec_seconds": float(row.exec_seconds) if row else 0.0,
                "nondeterministic": int(row.nondeterministic) if row else 0,
                "snapshots": int(snap.n) if snap else 0,
                "snapshot_bytes": int(snap.bytes or 0) if snap else 0,
            }
        )
    return out


def _label(call_json: str | None) -> str:
    if call_json is None:
        return "(root)"
    call = json.loads(call_json)
    text = f"{call['tool']} {json.dumps(call.get('args', {}), ensure_ascii=False)}"
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _tainted(conn: Connection, node_id: str) -> bool:
    """Is ``node_id`` or an ancestor nondeterministic? (A walk up: one lookup per level.)"""
    current: str | None = node_id
    while current is not None:
        row = conn.execute(
            select(_N.c.parent_id, _N.c.nondeterministic).where(_N.c.node_id == current)
        ).first()
        if row is None:
            return False
        if row.nondeterministic:
            return True
        current = row.parent_id
    return False


def _merged(
    conn: Connection, root_id: str, rows: list[tuple[str, str | None, bool, int]]
) -> set[str]:
    """Of (node id, fingerprint, read-only, children) rows, the leaves merged into an equal
    state: an earlier node of the root has the same fingerprint (the engine's rule on load)."""
    leaves = [(nid, fp) for nid, fp, read_only, kids in rows if fp and not read_only and not kids]
    if not leaves:
        return set()
    first = (
        select(_N.c.fingerprint, _N.c.node_id)
        .where(_N.c.root_id == root_id, _N.c.fingerprint.in_({fp for _, fp in leaves}))
        .where(~_N.c.read_only)
        .order_by(_N.c.created, _N.c.node_id)
    )
    owner: dict[str, str] = {}
    for row in conn.execute(first):
        owner.setdefault(row.fingerprint, row.node_id)
    return {nid for nid, fp in leaves if fp is not None and owner.get(fp) != nid}


def _node_row(row: Any, tainted: bool, merged: bool) -> dict[str, Any]:
    """The tree's view of one node (``row``: a query row or anything with its fields)."""
    return {
        "id": row.node_id,
        "parent": row.parent_id,
        "depth": row.depth,
        "label": _label(row.call),
        "hits": int(row.hits),
        "executions": int(row.executions),
        "passes": int(row.hits) + int(row.executions),  # sessions that went through it
        "seconds_saved": float(row.seconds_saved),
        "children": int(row.children),
        "snapshot": row.size_bytes is not None,
        "nondeterministic": bool(row.nondeterministic),
        "read_only": bool(row.read_only),
        "merged": merged,
        "tainted": tainted,
        "withdrawn": row.parent_id is not None and not row.observed,
    }


def _node_query() -> Any:
    child = _N.alias("child")
    count = select(func.count()).where(child.c.parent_id == _N.c.node_id).scalar_subquery()
    return select(
        _N.c.node_id,
        _N.c.parent_id,
        _N.c.depth,
        _N.c.call,
        _N.c.hits,
        _N.c.executions,
        _N.c.seconds_saved,
        _N.c.nondeterministic,
        _N.c.read_only,
        _N.c.fingerprint,
        _N.c.output.is_not(None).label("observed"),
        _S.c.size_bytes,
        count.label("children"),
    ).select_from(_N.outerjoin(_S, _S.c.node_id == _N.c.node_id))


def children(
    store: Store, root_id: str, parent_id: str | None = None, offset: int = 0, limit: int = PAGE
) -> dict[str, Any]:
    """One page of ``parent_id``'s children (the root's own node by default), oldest first,
    each with its own count of children so the view can offer to open it."""
    if not 0 <= offset <= MAX_OFFSET or not 1 <= limit <= MAX_PAGE:
        raise TvcacheError(
            f"bad page: offset {offset}, limit {limit}",
            f"ask for 0 <= offset <= {MAX_OFFSET} and 1 <= limit <= {MAX_PAGE}",
        )
    parent = parent_id or root_id
    with store.reading(f"page the children of node {parent!r}") as conn:
        owner = conn.execute(select(_N.c.root_id).where(_N.c.node_id == parent)).scalar()
        if owner != root_id:
            if parent == root_id:
                raise RootNotFoundError(
                    f"no root with id {root_id!r}", "list the roots at /v1/dashboard/roots"
                )
            raise NodeNotFoundError(
                f"no node {parent!r} under root {root_id!r}",
                "take node ids from the tree pages of that root",
            )
        total = conn.scalar(select(func.count()).where(_N.c.parent_id == parent)) or 0
        page = (
            _node_query()
            .where(_N.c.parent_id == parent)
            .order_by(_N.c.created, _N.c.node_id)
            .offset(offset)
            .limit(limit)
        )
        rows = list(conn.execute(page))
        above = _tainted(conn, parent)
        merged = _merged(
            conn, root_id, [(r.node_id, r.fingerprint, r.read_only, r.children) for r in rows]
        )
    nodes = [_node_row(r, above or bool(r.nondeterministic), r.node_id in merged) for r in rows]
    return {"root_id": root_id, "parent": parent, "total": int(total), "offset": offset,
            "nodes": nodes}  # fmt: skip


def restore_command(settings: Settings, root_id: str, node_id: str) -> str:
    """The ``tvcache restore`` line that gives a live sandbox at ``node_id``."""
    words = ["tvcache"]
    if settings.home != default_home():
        words += ["--home", str(settings.home)]
    if settings.store_url:
        words += ["--store-url", make_url(settings.store_url).render_as_string(hide_password=True)]
    return shlex.join([*words, "restore", root_id, "--node", node_id])


def _detail(
    record: NodeRecord,
    snap: SnapshotRecord | None,
    flags: dict[str, Any],
    settings: Settings,
    now: float,
) -> dict[str, Any]:
    """One node in full; ``flags``: its ``children``, ``tainted`` and ``merged``."""
    snapshot = None
    if snap is not None:
        snapshot = {
            "level": snap.handle.level,
            "bytes": snap.handle.size_bytes,
            "age_seconds": max(0.0, now - snap.created),
            "created": snap.created,
        }
    stats = record.stats
    call = record.call
    return {
        "id": record.node_id,
        "root_id": record.root_id,
        "parent": record.parent_id,
        "depth": record.depth,
        "call": None if call is None else {"tool": call.tool, "args": dict(call.args)},
        "observation": None if record.observation is None else record.observation.to_dict(),
        "stats": {
            "executions": stats.executions,
            "hits": stats.hits,
            "exec_seconds": stats.exec_seconds,
            "seconds_saved": stats.seconds_saved,
            "last_use": stats.last_use,
        },
        **flags,
        "nondeterministic": record.nondeterministic,
        "read_only": record.read_only,
        "fingerprint": record.fingerprint,
        "snapshot": snapshot,
        "restore": restore_command(settings, record.root_id, record.node_id),
    }


def _missing(root_id: str, node_id: str) -> NodeNotFoundError:
    return NodeNotFoundError(
        f"no node {node_id!r} under root {root_id!r}",
        "take node ids from the tree pages of that root",
    )


def node_detail(store: Store, root_id: str, node_id: str, settings: Settings) -> dict[str, Any]:
    """Everything about one node: call, observation, stats, flags, snapshot, restore line."""
    record = store.get_node(node_id)
    if record is None or record.root_id != root_id:
        raise _missing(root_id, node_id)
    with store.reading(f"read node {node_id!r}") as conn:
        snap_row = conn.execute(select(_S).where(_S.c.node_id == node_id)).first()
        kids = int(conn.scalar(select(func.count()).where(_N.c.parent_id == node_id)) or 0)
        tainted = _tainted(conn, node_id)
        probe = (node_id, record.fingerprint, record.read_only, kids)
        merged = bool(_merged(conn, root_id, [probe]))
    snap = None if snap_row is None else schema.snapshot_record(snap_row)
    flags = {"children": kids, "tainted": tainted, "merged": merged}
    return _detail(record, snap, flags, settings, time.time())


def export(store: Store, root_id: str, settings: Settings) -> dict[str, Any]:
    """The whole view of one root as data, for a file that needs no server: its summary,
    every node's children in tree order and every node in full."""
    summary = [r for r in root_summaries(store) if r["root_id"] == root_id]
    if not summary:
        raise RootNotFoundError(f"no root with id {root_id!r}", "list roots with `tvcache stats`")
    records = store.load_nodes(root_id)  # parents before children
    snaps = {s.node_id: s for s in store.snapshots(root_id)}
    kids: dict[str, list[NodeRecord]] = {}
    for record in records:
        if record.parent_id is not None:
            kids.setdefault(record.parent_id, []).append(record)
    owner: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.created, r.node_id)):
        if record.fingerprint and not record.read_only:
            owner.setdefault(record.fingerprint, record.node_id)
    tainted: dict[str, bool] = {}
    details: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[dict[str, Any]]] = {}
    now = time.time()
    for record in records:
        above = tainted.get(record.parent_id, False) if record.parent_id else False
        tainted[record.node_id] = above or record.nondeterministic
        count = len(kids.get(record.node_id, ()))
        merged = bool(
            record.fingerprint
            and not record.read_only
            and not count
            and owner.get(record.fingerprint) != record.node_id
        )
        flags = {"children": count, "tainted": tainted[record.node_id], "merged": merged}
        detail = _detail(record, snaps.get(record.node_id), flags, settings, now)
        details[record.node_id] = detail
        if record.parent_id is not None:
            rows.setdefault(record.parent_id, []).append(_row_of(detail, record))
    for page in rows.values():
        page.sort(key=lambda row: (row["created"], row["id"]))
    return {"roots": summary, "children": rows, "details": details, "generated": now}


def _row_of(detail: dict[str, Any], record: NodeRecord) -> dict[str, Any]:
    """The tree row of a node, from its detail (the same fields ``children`` pages carry)."""
    stats = detail["stats"]
    call = record.call
    return {
        "id": record.node_id,
        "parent": record.parent_id,
        "depth": record.depth,
        "label": _label(None if call is None else call.to_json()),
        "hits": stats["hits"],
        "executions": stats["executions"],
        "passes": stats["hits"] + stats["executions"],
        "seconds_saved": stats["seconds_saved"],
        "children": detail["children"],
        "snapshot": detail["snapshot"] is not None,
        "nondeterministic": record.nondeterministic,
        "read_only": record.read_only,
        "merged": detail["merged"],
        "tainted": detail["tainted"],
        "withdrawn": record.parent_id is not None and record.observation is None,
        "created": record.created,
    }
