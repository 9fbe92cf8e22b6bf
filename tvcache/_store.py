"""Persistence of the tool-call graph: roots, nodes, snapshot records and snapshot locks.

SQLAlchemy Core, not the ORM: a miss writes one row and a hit writes nothing synchronously, so
the per-call overhead must stay at one small statement. SQLite (one file, no server) is the
default; PostgreSQL, for several hosts sharing a cache, goes through the same code.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, Protocol

import psutil
from sqlalchemy import (
    bindparam,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import PoolProxiedConnection, StaticPool
from sqlalchemy.schema import Table

from sandbox import Observation
from snapshots import TvcacheError
from tvcache import _schema as schema
from tvcache._group_commit import GroupCommit
from tvcache._journal import NodeJournal, recover
from tvcache._records import NodeRecord, NodeStats, RootRecord, SnapshotRecord
from tvcache._schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Fence", "StatsWriter", "Store", "StoreError", "default_store_url"]

log = logging.getLogger(__name__)

_BUSY_TIMEOUT_MS = 30_000
# SQLite checkpoints the write-ahead log inside the commit that finds it past this many pages
# (default 1000): a copy into the database and two syncs, paid by whichever miss commits its
# node then. Every 8000 pages the same node writes cost 30-47 % less in all (a page rewritten
# many times is copied once per checkpoint, and there are 8x fewer syncs; 4000 pages: 25-30 %)
# at an equal p50. The price: the log file grows to ~33 MB while the store is open (SQLite
# removes it when the last connection closes). In the committing thread on purpose: a
# checkpoint thread's syncs ran beside the tools' own and made their measured times slower.
_WAL_CHECKPOINT_PAGES = 8000
_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_INIT_LOCK = 0x7476_6361_6368_6501  # pg_advisory_xact_lock key: serialises schema creation
_URL_HINT = "use e.g. sqlite:////path/to/cache.db or postgresql+psycopg://user:password@host/dbname"
_HOST = socket.gethostname()
_NO_LOCK: AbstractContextManager[Any] = nullcontext()


class StoreError(TvcacheError):
    """The store could not be opened, read or written."""


def default_store_url() -> str:
    """``$TVCACHE_STORE_URL``, else the SQLite file ``$TVCACHE_HOME/cache.db``
    (``TVCACHE_HOME`` defaults to ``~/.cache/tvcache``, created if missing)."""
    url = os.environ.get("TVCACHE_STORE_URL")
    if url:
        return url
    home = Path(os.environ.get("TVCACHE_HOME") or "~/.cache/tvcache").expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the tvcache home directory {home}: {error.strerror}",
            "set TVCACHE_HOME to a writable directory, or TVCACHE_STORE_URL to a database URL",
        ) from error
    return f"sqlite:///{(home / 'cache.db').absolute()}"


def _mask(url: str) -> str:
    return re.sub(r"://([^/@:]*):[^/@]*@", r"://\1:***@", url)


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreError(f"store URL {_mask(url)!r} is not a database URL", _URL_HINT) from error
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what tvcache ships with
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(
            f"store URL {_mask(url)!r} names the database {backend!r}; "
            "tvcache stores its cache only in SQLite or PostgreSQL",
            _URL_HINT,
        )
    return parsed


def _corrupt(path: Path) -> StoreError:
    return StoreError(
        f"{path} is not a SQLite database (corrupted, or another kind of file)",
        f"tvcache left it unchanged; move it away (mv {path} {path}.broken) and a new store "
        "is created on the next start",
    )


def _check_sqlite_file(path: Path) -> None:
    """Refuse, without writing a byte, a file SQLite would fail on (or might 'repair')."""
    if path.is_dir():
        raise StoreError(
            f"the store path {path} is a directory", f"use a file, e.g. sqlite:///{path}/cache.db"
        )
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot create the directory of the store {path}: {error.strerror}",
                "choose a writable location for the store",
            ) from error
        return
    except OSError as error:
        raise StoreError(
            f"cannot read the store file {path}: {error.strerror}", "check its permissions"
        ) from error
    if head and head != _SQLITE_MAGIC:
        raise _corrupt(path)
    if head:
        tables = _sqlite_tables(path)
        if tables and "schema_version" not in tables:
            raise StoreError(
                f"{path} is a SQLite database of something else, not a tvcache store",
                "point the store URL at a new file; tvcache left this one unchanged",
            )


def _sqlite_tables(path: Path) -> set[str] | None:
    """Table names, read through a read-only connection: opening for writing switches the
    journal mode, which rewrites the header of a file that is not ours. Without a ``-wal``
    file beside it the file is opened immutable: a read-only open of a WAL-mode database
    would create ``-wal`` and ``-shm`` files, and deleting them afterwards could race its
    owner's writers."""
    wal = path.with_name(path.name + "-wal").exists()
    try:
        connection = sqlite3.connect(
            f"{path.as_uri()}?{'mode=ro' if wal else 'immutable=1'}", uri=True
        )
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(row[0]) for row in rows}
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        if "not a database" in str(error) or "malformed" in str(error):
            raise _corrupt(path) from error
        return None  # locked, unreadable WAL index...: the real open reports what matters


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int, started: float | None) -> bool:
    """Is the process that took a lock still running on this host?"""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists, but not ours to inspect
        return True
    return started is None or abs(created - started) < 1.0


class Fence(Protocol):
    """Who may write a root's rows (issue 14: a server's leases, tvcache._leases.Leases).
    Asked inside the write transaction, so the answer holds until it commits."""

    def lost(self, conn: Connection, root_ids: Collection[str]) -> set[str]:
        """The roots of ``root_ids`` whose rows this process must not write."""
        ...

    def refuse(self, root_ids: Collection[str], action: str) -> Exception:
        """The error a write to ``root_ids`` raises."""
        ...


class Store:
    """The graph and snapshot records of one cache, in SQLite or PostgreSQL.

    Thread-safe: connections come from a pool; SQLite writes of this process are serialised by
    a lock (other processes wait on SQLite's own lock, ``BEGIN IMMEDIATE`` + busy timeout).
    Every write is durable before the method returns: committed, or for a node of a SQLite
    file appended to the node journal (tvcache/_journal.py), which every other read or write
    of this store commits first. Rows refer to stored rows: put a root before its nodes, a
    parent before its children, a node before its snapshot.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._closed = False
        parsed = _parse_url(url)
        self._dialect = parsed.get_backend_name()
        self._shown = parsed.render_as_string(hide_password=True)
        self._path: Path | None = None
        self._write_lock = threading.Lock()
        self._read_lock: AbstractContextManager[Any] = _NO_LOCK
        if self._dialect == "sqlite":
            database = parsed.database or ""
            memory = database in ("", ":memory:")
            if not memory and not database.startswith("file:"):
                self._path = Path(database).expanduser().absolute()
                self._shown = str(self._path)
                _check_sqlite_file(self._path)
            if memory:  # one shared connection: reads must not interleave with a write
                self._read_lock = self._write_lock
        self._engine = self._create_engine(parsed, self._dialect)
        self._insert = sqlite.insert if self._dialect == "sqlite" else postgresql.insert
        self._node_commits = GroupCommit(self._write_nodes)
        self._node_conn: PoolProxiedConnection | None = None
        self._node_sql, self._node_binds = _prepared_node_insert(self._engine)
        self._root_sql, root_binds = _prepared_insert(self._engine, schema.roots, "root_id")
        self._root_binds = [(column, process or _same) for column, process in root_binds]
        self.fence: Fence | None = None  # set by a server that owns roots by lease
        self._journal: NodeJournal | None = None
        # ids this process knows stored (rows are never deleted): a node whose parent and root
        # are among them goes to the journal; any other one is checked by the database at once
        self._known_roots: set[str] = set()
        self._known_nodes: set[str] = set()
        try:
            self._init_schema()
            if self._path is not None:  # see tvcache/_journal.py
                directory = self._path.with_name(self._path.name + "-tvjournal")
                self._journal = NodeJournal(directory, self._commit_journaled)
                recover(directory, self._commit_journaled)
        except BaseException:
            self._engine.dispose()
            raise
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @property
    def closed(self) -> bool:
        return self._closed

    def _after_fork(self) -> None:
        # A connection carried across fork() corrupts SQLite files and PostgreSQL sessions: the
        # child opens its own. A lock some other thread held at the fork would never be released.
        self._write_lock = threading.Lock()
        self._node_commits.after_fork()
        if self._journal is not None:
            self._journal.after_fork()
        self._known_nodes = set()  # the parent's journaled rows are its to commit
        if self._node_conn is not None:  # the parent's: never used, closed or returned here
            _INHERITED.append(self._node_conn)
            self._node_conn = None
        if self._read_lock is not _NO_LOCK:  # in memory: the child has a copy of its own
            self._read_lock = self._write_lock
        else:
            self._engine.dispose(close=False)

    def _create_engine(self, parsed: URL, dialect: str) -> Engine:
        try:
            if dialect == "postgresql":
                return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=20)
            memory = self._path is None and (parsed.database or "") in ("", ":memory:")
            args: dict[str, Any] = {"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000}
            if memory:
                engine = create_engine(parsed, connect_args=args, poolclass=StaticPool)
            else:
                engine = create_engine(parsed, connect_args=args, pool_size=5, max_overflow=20)
        except ArgumentError as error:
            raise StoreError(
                f"cannot use the store URL {self._shown!r}: {error}", _URL_HINT
            ) from error
        except ImportError as error:
            raise StoreError(
                f"the database driver for {self._shown!r} is not installed ({error.name})",
                "pip install 'tvcache[postgres]' and use a postgresql+psycopg:// URL",
            ) from error

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy, not the sqlite3 module, decides where transactions begin (below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                # WAL + NORMAL: a commit survives a process crash; only power loss may lose
                # the last commits, never consistency.
                cursor.execute("PRAGMA synchronous = NORMAL")
                if not memory:  # see _WAL_CHECKPOINT_PAGES
                    cursor.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # A writer takes the write lock up front: a deferred transaction that reads and then
            # writes fails at once with SQLITE_BUSY instead of waiting out busy_timeout.
            write = connection.get_execution_options().get("tvcache_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def _tx(self, action: str, *, write: bool) -> Iterator[Connection]:
        """One transaction; database errors become StoreErrors that say what to do."""
        if self._closed:
            raise StoreError(
                f"cannot {action}: the store {self._shown} is closed", "open a new Store"
            )
        self._drain(action)
        lock: AbstractContextManager[Any] = self._read_lock
        if write and self._dialect == "sqlite":
            lock = self._write_lock
        try:
            with lock, self._engine.connect() as connection:
                if write:
                    connection = connection.execution_options(tvcache_write=True)
                with connection.begin():
                    yield connection
        except SQLAlchemyError as error:
            raise self._error(action, error) from error

    def _error(self, action: str, error: SQLAlchemyError) -> StoreError:
        detail = " ".join(str(getattr(error, "orig", None) or error).split())[:500]
        if self._path is not None and ("not a database" in detail or "malformed" in detail):
            return _corrupt(self._path)
        if isinstance(error, IntegrityError):
            hint = (
                "a record must refer to stored rows: put the root before its nodes, a parent "
                "before its children, a node before its snapshot"
            )
        elif isinstance(error, OperationalError) and "locked" in detail:
            hint = (
                f"another process held the store's write lock for over {_BUSY_TIMEOUT_MS // 1000}"
                " s; retry, or look for a stuck tvcache process"
            )
        else:
            hint = f"check that the database {self._shown} is reachable and writable"
        return StoreError(f"could not {action} in {self._shown}: {detail}", hint)

    def _init_schema(self) -> None:
        with self._tx("open the store", write=True) as conn:
            if self._dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_INIT_LOCK})
            tables = set(inspect(conn).get_table_names())
            if tables and "schema_version" not in tables:
                shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
                raise StoreError(
                    f"the database {self._shown} holds another application's tables ({shown}), "
                    "not a tvcache store",
                    "point the store URL at an empty database of its own (e.g. CREATE DATABASE "
                    "tvcache); tvcache left this one unchanged",
                )
            version = None
            if "schema_version" in tables:
                version = conn.scalar(select(func.max(schema.schema_version.c.version)))
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store {self._shown} has schema version {version}, newer than this "
                    f"tvcache understands ({SCHEMA_VERSION})",
                    "upgrade tvcache, or point TVCACHE_STORE_URL at another store",
                )
            schema.metadata.create_all(conn)
            if version is None:
                conn.execute(schema.schema_version.insert(), {"version": SCHEMA_VERSION})

    # --- for tables of other parts (tvcache.plans) -------------------------------------------

    def transaction(self, action: str, *, write: bool) -> AbstractContextManager[Connection]:
        """One transaction on the store's tables; errors become StoreErrors naming ``action``."""
        return self._tx(action, write=write)

    @property
    def insert(self) -> Any:
        """The dialect's ``insert`` (it has ``on_conflict_do_...``)."""
        return self._insert

    # --- roots --------------------------------------------------------------------------------

    def put_root(self, root: RootRecord) -> bool:
        """Store a root; a root already stored under the same id is kept as it is.
        True if the root is new (so it has no nodes or snapshots to load yet).

        A SQLite file is written through a prepared statement, as nodes are: through
        SQLAlchemy this was ~2.5 ms of a new root's first session (120 of them in ``bench sql``).
        """
        if self._path is not None:
            action = f"store root {root.root_id!r}"
            self._drain(action)
            row = schema.root_row(root)
            params = [[process(row[name]) for name, process in self._root_binds]]
            new = self._write_prepared(action, self._root_sql, params) == 1
            self._known_roots.add(root.root_id)
            return new
        stmt = (
            self._insert(schema.roots)
            .on_conflict_do_nothing(index_elements=["root_id"])
            .returning(schema.roots.c.root_id)
        )
        with self._tx(f"store root {root.root_id!r}", write=True) as conn:
            return conn.execute(stmt, schema.root_row(root)).first() is not None

    def get_root(self, root_id: str) -> RootRecord | None:
        with self._tx(f"read root {root_id!r}", write=False) as conn:
            row = conn.execute(
                select(schema.roots).where(schema.roots.c.root_id == root_id)
            ).first()
        return None if row is None else schema.root_record(row)

    def roots(self) -> list[RootRecord]:
        with self._tx("list roots", write=False) as conn:
            rows = conn.execute(
                select(schema.roots).order_by(schema.roots.c.created, schema.roots.c.root_id)
            ).all()
        return [schema.root_record(row) for row in rows]

    def find_roots(self, task_id: str) -> list[RootRecord]:
        """The roots of one task (one per backend, template or option set)."""
        query = select(schema.roots).where(schema.roots.c.task_id == task_id)
        with self._tx(f"find roots of task {task_id!r}", write=False) as conn:
            rows = conn.execute(
                query.order_by(schema.roots.c.created, schema.roots.c.root_id)
            ).all()
        return [schema.root_record(row) for row in rows]

    # --- nodes --------------------------------------------------------------------------------

    def put_node(self, node: NodeRecord) -> None:
        """Store a node, durable before return. Ids are content hashes, so a node already
        stored (by another rollout or host) is the same node: the insert is then a no-op.

        The one write on a miss's path. A SQLite file without a fence: one line appended to
        the node journal (tvcache/_journal.py), committed in batches, before any other read
        or write of this store, and by the next process to open it after a crash. Otherwise
        nodes of concurrent callers are committed together (group commit).
        """
        if self._closed:
            raise StoreError(
                f"cannot store node {node.node_id!r}: the store {self._shown} is closed",
                "open a new Store",
            )
        parent = node.parent_id
        if (
            self._journal is not None
            and self.fence is None
            and node.root_id in self._known_roots
            and (parent is None or parent in self._known_nodes)
        ):
            try:
                self._journal.append(schema.node_journal_row(node))
            except ValueError:  # args marshal cannot write (not plain JSON values): at once
                pass
            except OSError as error:
                raise StoreError(
                    f"could not store node {node.node_id!r} in the journal of {self._shown}: "
                    f"{error.strerror or error}",
                    f"check that {self._journal.directory} is writable and its disk not full",
                ) from error
            else:
                self._known_nodes.add(node.node_id)
                return
        self._drain(self._nodes_action([node]))
        self._node_commits.write(node)
        self._known_nodes.add(node.node_id)

    def flush(self) -> None:
        """Commit the journaled nodes now. This process sees them anyway; another process
        sees them within the journal's delay (0.05 s), or once this is called."""
        self._drain("commit the journaled nodes")

    def _drain(self, action: str) -> None:
        """Commit the journaled nodes before ``action``, which must see them."""
        if self._journal is not None and self._journal.pending:
            try:
                self._journal.drain()
            except StoreError as error:
                raise StoreError(
                    f"cannot {action}: journaled nodes could not be committed first: "
                    f"{error.message}",
                    error.hint,
                ) from error

    def _commit_journaled(self, rows: Sequence[list[Any]]) -> None:
        """Commit journaled node rows in one transaction. A row the database refuses for good
        (its root or parent is not stored) is dropped with a warning: the others must not wait
        behind it, and a lost cache entry is never a wrong one."""
        action = f"store {len(rows)} journaled node(s)"
        params = []
        for row in rows:
            try:
                params.append(self._node_params(schema.node_from_journal(row)))
            except ValueError as error:
                log.warning("tvcache: a damaged journal record was dropped: %s", error)
        try:
            self._write_prepared(action, self._node_sql, params)
            return
        except StoreError as error:
            if not isinstance(error.__cause__, sqlite3.IntegrityError):
                raise
            if len(rows) == 1:
                log.warning("tvcache: a journaled node was dropped: %s", error.message)
                return
        for row in rows:  # one at a time, to find the one refused
            self._commit_journaled([row])

    def _write_nodes(self, nodes: Sequence[NodeRecord]) -> None:
        """One transaction inserting ``nodes`` (the batch of a group commit)."""
        if self._path is None or self.fence is not None:
            action = self._nodes_action(nodes)
            stmt = self._insert(schema.nodes).on_conflict_do_nothing(index_elements=["node_id"])
            with self._tx(action, write=True) as conn:
                self._fenced(conn, {node.root_id for node in nodes}, action)
                conn.execute(stmt, [schema.node_row(node) for node in nodes])
            return
        params = [self._node_params(node) for node in nodes]
        self._write_prepared(self._nodes_action(nodes), self._node_sql, params)

    def _write_prepared(self, action: str, sql: str, params: list[list[Any]]) -> int:
        """One transaction running the prepared ``sql`` once per parameter list, on the SQLite
        connection kept for it, skipping SQLAlchemy's per-statement work; the rows changed."""
        if self._closed:
            raise StoreError(
                f"cannot {action}: the store {self._shown} is closed", "open a new Store"
            )
        with self._write_lock:
            connection = self._node_connection()
            try:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    changed = connection.executemany(sql, params).rowcount
                    connection.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                wrapped = DBAPIError.instance(sql, None, error, sqlite3.Error)
                raise self._error(action, wrapped) from error
        return changed

    def _node_params(self, node: NodeRecord) -> list[Any]:
        """The prepared insert's parameters: the columns, converted where SQLAlchemy would."""
        values = list(schema.node_values(node))
        for index, process in self._node_binds:
            values[index] = process(values[index])
        return values

    @staticmethod
    def _nodes_action(nodes: Sequence[NodeRecord]) -> str:
        more = f" and {len(nodes) - 1} more" if len(nodes) > 1 else ""
        return f"store node {nodes[0].node_id!r}{more}"

    def _fenced(self, conn: Connection, root_ids: Collection[str], action: str) -> None:
        """Refuse ``action`` unless the fence (if any) lets this process write ``root_ids``."""
        if self.fence is not None:
            lost = self.fence.lost(conn, root_ids)
            if lost:
                raise self.fence.refuse(lost, action)

    def _roots_of(self, conn: Connection, node_ids: Collection[str]) -> dict[str, str]:
        """Node id -> its root id, for the fence of writes that name nodes only."""
        nodes = schema.nodes.c
        query = select(nodes.node_id, nodes.root_id).where(nodes.node_id.in_(sorted(node_ids)))
        return {row.node_id: row.root_id for row in conn.execute(query)}

    def _node_connection(self) -> sqlite3.Connection:
        """The SQLite connection node writes use (under the write lock), opened once."""
        if self._node_conn is None:
            try:
                self._node_conn = self._engine.raw_connection()
            except SQLAlchemyError as error:
                raise self._error("open a connection for node writes", error) from error
        raw = self._node_conn.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        return raw

    def load_nodes(self, root_id: str) -> list[NodeRecord]:
        """All nodes of a root, parents before children (by depth)."""
        query = (
            select(schema.nodes)
            .where(schema.nodes.c.root_id == root_id)
            .order_by(schema.nodes.c.depth, schema.nodes.c.created, schema.nodes.c.node_id)
        )
        with self._tx(f"load the nodes of root {root_id!r}", write=False) as conn:
            rows = conn.execute(query).all()
        records = [schema.node_record(row) for row in rows]
        if records:
            self._known_roots.add(root_id)
            self._known_nodes.update(record.node_id for record in records)
        return records

    def reading(self, action: str) -> AbstractContextManager[Connection]:
        """A read transaction for queries that live beside their one user (the dashboard's
        paged tree in tvcache/_tree_view.py); ``action`` names it in errors."""
        return self._tx(action, write=False)

    def get_node(self, node_id: str) -> NodeRecord | None:
        with self._tx(f"read node {node_id!r}", write=False) as conn:
            row = conn.execute(
                select(schema.nodes).where(schema.nodes.c.node_id == node_id)
            ).first()
        return None if row is None else schema.node_record(row)

    def node_count(self, root_id: str | None = None) -> int:
        query = select(func.count()).select_from(schema.nodes)
        if root_id is not None:
            query = query.where(schema.nodes.c.root_id == root_id)
        with self._tx("count nodes", write=False) as conn:
            return int(conn.scalar(query) or 0)

    def write_stats(self, stats: Mapping[str, NodeStats]) -> None:
        """Overwrite the statistics of many nodes in one transaction (unknown ids are skipped)."""
        if not stats:
            return
        stmt = (
            update(schema.nodes)
            .where(schema.nodes.c.node_id == bindparam("b_node_id"))
            .values(
                executions=bindparam("b_executions"),
                hits=bindparam("b_hits"),
                exec_seconds=bindparam("b_exec_seconds"),
                seconds_saved=bindparam("b_seconds_saved"),
                last_use=bindparam("b_last_use"),
            )
        )
        rows = [
            {
                "b_node_id": node_id,
                "b_executions": value.executions,
                "b_hits": value.hits,
                "b_exec_seconds": value.exec_seconds,
                "b_seconds_saved": value.seconds_saved,
                "b_last_use": value.last_use,
            }
            for node_id, value in sorted(stats.items())  # one order: no deadlock between hosts
        ]
        with self._tx(f"write the statistics of {len(rows)} node(s)", write=True) as conn:
            if self.fence is not None:  # a root lost since: its statistics are the owner's now
                roots = self._roots_of(conn, stats)
                lost = self.fence.lost(conn, set(roots.values()))
                rows = [r for r in rows if roots.get(str(r["b_node_id"])) not in lost]
            if rows:
                conn.execute(stmt, rows)

    def set_flags(
        self,
        node_id: str,
        *,
        nondeterministic: bool | None = None,
        read_only: bool | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Set the flags (and the state fingerprint) given; None leaves a field as it is."""
        values: dict[str, bool | str] = {}
        if nondeterministic is not None:
            values["nondeterministic"] = nondeterministic
        if read_only is not None:
            values["read_only"] = read_only
        if fingerprint is not None:
            values["fingerprint"] = fingerprint
        if not values:
            return
        stmt = update(schema.nodes).where(schema.nodes.c.node_id == node_id).values(**values)
        action = f"set flags of node {node_id!r}"
        with self._tx(action, write=True) as conn:
            if self.fence is not None:
                self._fenced(conn, set(self._roots_of(conn, [node_id]).values()), action)
            if conn.execute(stmt).rowcount == 0:
                raise StoreError(
                    f"cannot set flags of node {node_id!r}: no such node in {self._shown}",
                    "store the node (put_node) before setting its flags",
                )

    def set_observation(self, node_id: str, observation: Observation | None) -> None:
        """Replace a node's observation; None withdraws it from service (a verified mismatch)."""
        values = schema.observation_columns(observation)
        stmt = update(schema.nodes).where(schema.nodes.c.node_id == node_id).values(**values)
        action = f"set the observation of node {node_id!r}"
        with self._tx(action, write=True) as conn:
            if self.fence is not None:
                self._fenced(conn, set(self._roots_of(conn, [node_id]).values()), action)
            if conn.execute(stmt).rowcount == 0:
                raise StoreError(
                    f"cannot set the observation of node {node_id!r}: not in {self._shown}",
                    "store the node (put_node) first",
                )

    # --- snapshots ----------------------------------------------------------------------------

    def put_snapshot(self, record: SnapshotRecord) -> None:
        """Record the snapshot of a node, replacing the one it had (its locks stay)."""
        insert = self._insert(schema.snapshots)
        stmt = insert.on_conflict_do_update(
            index_elements=["node_id"],
            set_={
                "root_id": insert.excluded.root_id,
                "handle": insert.excluded.handle,
                "size_bytes": insert.excluded.size_bytes,
                "created": insert.excluded.created,
            },
        )
        row = {
            "node_id": record.node_id,
            "root_id": record.root_id,
            "handle": record.handle.to_json(),
            "size_bytes": record.handle.size_bytes,
            "created": record.created,
        }
        action = f"store the snapshot of node {record.node_id!r}"
        with self._tx(action, write=True) as conn:
            self._fenced(conn, {record.root_id}, action)
            conn.execute(stmt, row)

    def delete_snapshot(self, node_id: str, *, if_unlocked: bool = False) -> bool:
        """Forget the snapshot of a node (and its locks); True if there was one.

        With ``if_unlocked``, a locked snapshot is kept and False returned, atomically with
        respect to ``lock_snapshot`` in any process: what an evictor needs.
        """
        with self._tx(f"delete the snapshot of node {node_id!r}", write=True) as conn:
            if if_unlocked:
                # FOR UPDATE (PostgreSQL) waits for a concurrent lock_snapshot to commit.
                held = select(schema.snapshots.c.node_id).where(
                    schema.snapshots.c.node_id == node_id
                )
                if conn.execute(held.with_for_update()).first() is None:
                    return False
                locked = (
                    select(schema.locks.c.node_id).where(schema.locks.c.node_id == node_id).limit(1)
                )
                if conn.execute(locked).first() is not None:
                    return False
            result = conn.execute(
                delete(schema.snapshots).where(schema.snapshots.c.node_id == node_id)
            )
            return result.rowcount > 0

    def snapshots(self, root_id: str | None = None) -> list[SnapshotRecord]:
        query = select(schema.snapshots).order_by(
            schema.snapshots.c.created, schema.snapshots.c.node_id
        )
        if root_id is not None:
            query = query.where(schema.snapshots.c.root_id == root_id)
        with self._tx("list snapshots", write=False) as conn:
            rows = conn.execute(query).all()
        return [schema.snapshot_record(row) for row in rows]

    def lock_snapshot(self, node_id: str, owner: str, *, pid: int | None = None) -> None:
        """Keep a node's snapshot from eviction while ``owner`` (unique per use, e.g. a fork
        id) forks it. The lease names process and host so that a crashed holder's locks can be
        released (release_stale_locks); ``pid`` defaults to this process."""
        pid = os.getpid() if pid is None else pid
        insert = self._insert(schema.locks)
        stmt = insert.on_conflict_do_update(
            index_elements=["node_id", "owner"],
            set_={
                "pid": insert.excluded.pid,
                "host": insert.excluded.host,
                "since": insert.excluded.since,
                "started": insert.excluded.started,
            },
        )
        row = {
            "node_id": node_id,
            "owner": owner,
            "pid": pid,
            "host": _HOST,
            "since": time.time(),
            "started": _process_start(pid),
        }
        exists = select(schema.snapshots.c.node_id).where(schema.snapshots.c.node_id == node_id)
        with self._tx(f"lock the snapshot of node {node_id!r}", write=True) as conn:
            if conn.execute(exists.with_for_update(read=True)).first() is None:
                raise StoreError(
                    f"cannot lock the snapshot of node {node_id!r}: it has none in {self._shown}",
                    "it was deleted or evicted; fork from another ancestor",
                )
            conn.execute(stmt, row)

    def unlock_snapshot(self, node_id: str, owner: str) -> None:
        """Drop ``owner``'s lock; unlocking what is not locked is a no-op."""
        stmt = delete(schema.locks).where(
            schema.locks.c.node_id == node_id, schema.locks.c.owner == owner
        )
        with self._tx(f"unlock the snapshot of node {node_id!r}", write=True) as conn:
            conn.execute(stmt)

    def locked_node_ids(self) -> set[str]:
        """Nodes whose snapshot is locked by someone (eviction must skip them)."""
        with self._tx("list snapshot locks", write=False) as conn:
            return set(conn.scalars(select(schema.locks.c.node_id).distinct()))

    def release_stale_locks(self) -> int:
        """Remove the locks of processes on this host that are gone; returns how many.
        Locks taken on other hosts are left alone: their processes cannot be checked here."""
        query = select(
            schema.locks.c.node_id, schema.locks.c.owner, schema.locks.c.pid, schema.locks.c.started
        ).where(schema.locks.c.host == _HOST)
        stmt = delete(schema.locks).where(
            schema.locks.c.node_id == bindparam("b_node_id"),
            schema.locks.c.owner == bindparam("b_owner"),
            schema.locks.c.pid == bindparam("b_pid"),
        )
        with self._tx("release stale snapshot locks", write=True) as conn:
            stale = [
                {"b_node_id": row.node_id, "b_owner": row.owner, "b_pid": row.pid}
                for row in conn.execute(query)
                if not _alive(row.pid, row.started)
            ]
            if stale:
                conn.execute(stmt, stale)
        return len(stale)

    # --- housekeeping -------------------------------------------------------------------------

    def size_bytes(self) -> int | None:
        """Bytes the store occupies: the SQLite file and its WAL, or the PostgreSQL tables and
        their indexes; None for an in-memory database."""
        if self._dialect == "postgresql":
            size = text("SELECT pg_total_relation_size(CAST(:name AS regclass))")
            with self._tx("measure the store", write=False) as conn:
                return sum(
                    int(conn.scalar(size, {"name": table.name}) or 0)
                    for table in schema.metadata.sorted_tables
                )
        if self._path is None:
            return None
        total = 0
        for path in (self._path, self._path.with_name(self._path.name + "-wal")):
            with suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def close(self) -> None:
        """Release the connections. Idempotent; the store cannot be used afterwards."""
        if not self._closed:
            try:
                if self._journal is not None:
                    self._journal.close()
            except StoreError as error:  # the rows stay in the journal for the next open
                log.warning("tvcache: journaled nodes left for the next open: %s", error)
            self._closed = True
            with self._write_lock:
                if self._node_conn is not None:
                    self._node_conn.close()
                    self._node_conn = None
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._shown!r})"


def _prepared_insert(
    engine: Engine, table: Table, key: str
) -> tuple[str, list[tuple[str, Callable[[Any], Any] | None]]]:
    """A SQLite insert into ``table`` (a row already stored under ``key`` is kept) as SQL with
    ``?`` markers, and per column its name and the conversion SQLAlchemy would apply (the
    column type's bind processor), if any."""
    binds: list[tuple[str, Callable[[Any], Any] | None]] = [
        (c.name, c.type.bind_processor(engine.dialect)) for c in table.columns
    ]
    names = ", ".join(name for name, _ in binds)
    marks = ", ".join("?" for _ in binds)
    sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING"
    return sql, binds


def _prepared_node_insert(engine: Engine) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
    """The node insert, and the conversions by column index for the columns that have one."""
    sql, binds = _prepared_insert(engine, schema.nodes, "node_id")
    return sql, [(index, process) for index, (_, process) in enumerate(binds) if process]


def _same(value: Any) -> Any:
    return value


_INHERITED: list[PoolProxiedConnection] = []  # connections a forked child must never touch


def _after_fork(ref: weakref.ref[Store]) -> None:
    store = ref()
    if store is not None and not store.closed:
        store._after_fork()


class StatsWriter:
    """Write-behind of NodeStats, so that a hit never waits on disk.

    ``mark`` remembers the live stats object (latest wins); a daemon thread copies the values
    and writes them every ``interval`` seconds. ``close`` (also run at interpreter exit)
    writes what is left. Statistics lost in a crash are at most ``interval`` old.
    """

    def __init__(self, store: Store, interval: float = 0.5) -> None:
        if interval <= 0:
            raise StoreError(
                f"StatsWriter interval must be positive, got {interval}", "pass e.g. 0.5"
            )
        self._store = store
        self._interval = interval
        self._pending: dict[str, NodeStats] = {}
        self._lock = threading.Lock()  # guards _pending and _closed
        self._flush_lock = threading.Lock()  # an older copy must never land after a newer one
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tvcache-stats", daemon=True)
        self._at_exit = functools.partial(_close_quietly, weakref.ref(self))
        atexit.register(self._at_exit)
        self._thread.start()

    def mark(self, node_id: str, stats: NodeStats) -> None:
        """Remember that ``stats`` of ``node_id`` changed; cheap, never touches the database."""
        with self._lock:
            if self._closed:
                raise StoreError(
                    f"statistics of node {node_id!r} marked after the StatsWriter was closed",
                    "close the StatsWriter only after the engine stopped serving calls",
                )
            self._pending[node_id] = stats

    def flush(self) -> None:
        """Write every marked node's current statistics now."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            copies = {
                node_id: NodeStats(
                    executions=s.executions,
                    hits=s.hits,
                    exec_seconds=s.exec_seconds,
                    seconds_saved=s.seconds_saved,
                    last_use=s.last_use,
                )
                for node_id, s in pending.items()
            }
            try:
                self._store.write_stats(copies)
            except BaseException:
                with self._lock:  # keep them for the next attempt, unless marked again since
                    for node_id, s in pending.items():
                        self._pending.setdefault(node_id, s)
                raise

    def close(self) -> None:
        """Stop the thread and write what is left. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._at_exit)
        self._stop.set()
        self._thread.join()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._store.closed:
                log.warning("tvcache: the store closed before its StatsWriter; statistics stop")
                return
            try:
                self.flush()
            except Exception as error:  # keep the thread alive; the values are retried
                log.warning("tvcache: writing node statistics failed, will retry: %s", error)


def _close_quietly(ref: weakref.ref[StatsWriter]) -> None:
    writer = ref()
    if writer is not None:
        try:
            writer.close()
        except Exception as error:
            log.warning("tvcache: node statistics not written at exit: %s", error)
