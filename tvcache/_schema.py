"""The store's tables, and the conversions between their rows and the records.

One schema for SQLite and PostgreSQL (SQLAlchemy Core). ``Output`` makes text survive
PostgreSQL; the row functions are the only place that knows both a record and a column.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.types import TypeDecorator

from sandbox import Observation, RootSpec, ToolCall
from snapshots import SnapshotHandle
from tvcache._records import NodeRecord, NodeStats, RootRecord, SnapshotRecord

SCHEMA_VERSION = 1


class Output(TypeDecorator[str]):
    """Text that survives PostgreSQL, which rejects NUL characters (and both drivers reject
    lone surrogates): such values, and values that look escaped, are stored as a marked JSON
    string. Tool output with a NUL (``cat`` of a binary file) is ordinary."""

    impl = Text
    cache_ok = True
    _MARK = "\ufdd0tvcache-json:"

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or not needs_escape(value, self._MARK):
            return value
        return self._MARK + json.dumps(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and value.startswith(self._MARK):
            decoded: str = json.loads(value[len(self._MARK) :])
            return decoded
        return value


def needs_escape(value: str, mark: str) -> bool:
    if "\x00" in value or value.startswith(mark):
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


metadata = MetaData()

roots = Table(
    "roots",
    metadata,
    Column("root_id", String, primary_key=True),
    Column("task_id", String, nullable=False, index=True),
    Column("backend", String, nullable=False),
    Column("template", Text),
    Column("options", Text, nullable=False),  # JSON object
    Column("identity", Text, nullable=False),
    Column("created", Double, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String, primary_key=True),
    Column("root_id", String, ForeignKey("roots.root_id"), nullable=False, index=True),
    Column("parent_id", String, ForeignKey("nodes.node_id"), index=True),
    Column("depth", Integer, nullable=False),
    Column("call_key", String),
    Column("call", Text),  # ToolCall JSON
    Column("output", Output),  # NULL: no observation
    Column("exit_code", Integer),
    Column("seconds", Double),
    Column("truncated", Boolean),
    Column("timed_out", Boolean),
    Column("nondeterministic", Boolean, nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("fingerprint", String),  # state digest after the call; NULL: not fingerprinted
    Column("executions", BigInteger, nullable=False),
    Column("hits", BigInteger, nullable=False),
    Column("exec_seconds", Double, nullable=False),
    Column("seconds_saved", Double, nullable=False),
    Column("last_use", Double, nullable=False),
    Column("created", Double, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("node_id", String, ForeignKey("nodes.node_id"), primary_key=True),
    Column("root_id", String, ForeignKey("roots.root_id"), nullable=False, index=True),
    Column("handle", Text, nullable=False),  # SnapshotHandle JSON
    Column("size_bytes", BigInteger, nullable=False),
    Column("created", Double, nullable=False),
)

locks = Table(
    "snapshot_locks",
    metadata,
    Column(
        "node_id",
        String,
        ForeignKey("snapshots.node_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("owner", String, primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("host", String, nullable=False),
    Column("since", Double, nullable=False),
    # start time of ``pid``: a pid reused after a crash (a restarted container) is not the holder
    Column("started", Double),
)

plan_templates = Table(
    # the plan cache (tvcache.plans): keyword -> plan templates, with how they fared; created
    # by create_all on any store, old or new, so it needs no schema version of its own
    "plan_templates",
    metadata,
    Column("template_id", String, primary_key=True),  # hash of namespace, keyword, template
    Column("namespace", String, nullable=False),
    Column("keyword", String, nullable=False, index=True),
    Column("template", Output, nullable=False),
    Column("source", String),  # the request it was generated from
    Column("prompt_version", String, nullable=False),
    Column("uses", BigInteger, nullable=False),
    Column("successes", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("created", Double, nullable=False),
    Column("last_use", Double, nullable=False),
)

root_leases = Table(
    # issue 14: which server owns a root, until when; ``epoch`` is the fencing token. A row is
    # never deleted (a release only expires it), so epochs of a root only ever grow.
    "root_leases",
    metadata,
    Column("root_id", String, primary_key=True),  # no foreign key: a lease may precede the root
    Column("owner", String, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires", Double, nullable=False),  # seconds since the epoch, the database's clock
)

cluster_servers = Table(
    # issue 14: the live servers clients route over; a row without a recent heartbeat is dead
    "cluster_servers",
    metadata,
    Column("server_id", String, primary_key=True),
    Column("address", String, nullable=False),  # http://host:port
    Column("expires", Double, nullable=False),
    Column("started", Double, nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
)


def root_row(root: RootRecord) -> dict[str, Any]:
    spec = root.spec
    return {
        "root_id": root.root_id,
        "task_id": spec.task_id,
        "backend": spec.backend,
        "template": spec.template,
        "options": json.dumps(dict(spec.options), sort_keys=True),
        "identity": root.identity,
        "created": root.created,
    }


def root_record(row: Row[Any]) -> RootRecord:
    spec = RootSpec(
        task_id=row.task_id,
        backend=row.backend,
        template=row.template,
        options=json.loads(row.options),
    )
    return RootRecord(root_id=row.root_id, spec=spec, identity=row.identity, created=row.created)


def node_values(node: NodeRecord) -> tuple[Any, ...]:
    """The node's columns in table order (the store's prepared insert binds them as they are)."""
    stats, obs = node.stats, node.observation
    return (
        node.node_id,
        node.root_id,
        node.parent_id,
        node.depth,
        node.call_key,
        None if node.call is None else node.call.to_json(),
        *(
            (None, None, None, None, None)
            if obs is None
            else (obs.output, obs.exit_code, obs.seconds, obs.truncated, obs.timed_out)
        ),
        node.nondeterministic,
        node.read_only,
        node.fingerprint,
        stats.executions,
        stats.hits,
        stats.exec_seconds,
        stats.seconds_saved,
        stats.last_use,
        node.created,
    )


def node_journal_row(node: NodeRecord) -> list[Any]:
    """The node as plain values for the node journal (``marshal``): cheap, on a miss's path.
    The journal's thread makes the columns from it (:func:`node_from_journal`, the binds)."""
    call, obs, stats = node.call, node.observation, node.stats
    return [
        node.node_id,
        node.root_id,
        node.parent_id,
        node.depth,
        node.call_key,
        None if call is None else [call.tool, dict(call.args)],
        None
        if obs is None
        else [obs.output, obs.exit_code, obs.seconds, obs.truncated, obs.timed_out],
        node.nondeterministic,
        node.read_only,
        node.fingerprint,
        [stats.executions, stats.hits, stats.exec_seconds, stats.seconds_saved, stats.last_use],
        node.created,
    ]


def node_from_journal(row: list[Any]) -> NodeRecord:
    """:func:`node_journal_row` read back; a row of another shape raises ValueError."""
    try:
        (node_id, root_id, parent_id, depth, call_key, call, obs, nondeterministic, read_only,
         fingerprint, stats, created) = row  # fmt: skip
        executions, hits, exec_seconds, seconds_saved, last_use = stats
        return NodeRecord(
            node_id=node_id,
            root_id=root_id,
            parent_id=parent_id,
            depth=depth,
            call_key=call_key,
            call=None if call is None else ToolCall(call[0], call[1]),
            observation=None if obs is None else Observation(*obs),
            nondeterministic=nondeterministic,
            read_only=read_only,
            fingerprint=fingerprint,
            stats=NodeStats(executions, hits, exec_seconds, seconds_saved, last_use),
            created=created,
        )
    except (TypeError, ValueError, IndexError) as error:
        raise ValueError(f"not a journaled node: {error}") from error


NODE_COLUMNS = tuple(column.name for column in nodes.columns)


def node_row(node: NodeRecord) -> dict[str, Any]:
    return dict(zip(NODE_COLUMNS, node_values(node), strict=True))


def observation_columns(obs: Observation | None) -> dict[str, Any]:
    return {
        "output": None if obs is None else obs.output,
        "exit_code": None if obs is None else obs.exit_code,
        "seconds": None if obs is None else obs.seconds,
        "truncated": None if obs is None else obs.truncated,
        "timed_out": None if obs is None else obs.timed_out,
    }


def node_record(row: Row[Any]) -> NodeRecord:
    observation = None
    if row.output is not None:
        observation = Observation(
            output=row.output,
            exit_code=row.exit_code,
            seconds=row.seconds,
            truncated=bool(row.truncated),
            timed_out=bool(row.timed_out),
        )
    return NodeRecord(
        node_id=row.node_id,
        root_id=row.root_id,
        parent_id=row.parent_id,
        depth=row.depth,
        call_key=row.call_key,
        call=None if row.call is None else ToolCall.from_json(row.call),
        observation=observation,
        nondeterministic=bool(row.nondeterministic),
        read_only=bool(row.read_only),
        fingerprint=row.fingerprint,
        stats=NodeStats(
            executions=row.executions,
            hits=row.hits,
            exec_seconds=row.exec_seconds,
            seconds_saved=row.seconds_saved,
            last_use=row.last_use,
        ),
        created=row.created,
    )


def snapshot_record(row: Row[Any]) -> SnapshotRecord:
    return SnapshotRecord(
        node_id=row.node_id,
        root_id=row.root_id,
        handle=SnapshotHandle.from_json(row.handle),
        created=row.created,
    )
