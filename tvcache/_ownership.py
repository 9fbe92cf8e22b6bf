"""Who owns a root, and which servers are alive: leases in the store (issue 14).

Several servers share one store; each root (task) must be served by one of them at a time, so
that all rollouts of a group meet in one trie and its snapshots. A server holds a root by a
*lease* that expires unless renewed; a server that dies loses its roots after ``ttl`` seconds
and another takes them over. Each grant of a lease to a new holder bumps the root's *epoch*, a
fencing token: a write made through :meth:`Ownership.fenced` commits only while its lease is
the live one, so a server that was paused past its lease cannot write as owner.

Times are the database's clock (PostgreSQL) so that servers on hosts with skewed clocks agree;
SQLite is one host, and uses this process's clock. ``clock`` overrides both, for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select, text, update
from sqlalchemy.engine import Connection

from snapshots import TvcacheError
from tvcache._schema import cluster_servers, root_leases
from tvcache._store import Store

__all__ = ["Lease", "LeaseLost", "Ownership", "ServerEntry"]

_L = root_leases.c
_S = cluster_servers.c
_RELEASED = 0.0  # ``expires`` of a released lease: the row stays, so its epoch keeps growing


class LeaseLost(TvcacheError):
    """A server acted on a root it no longer owns (its lease expired or was taken over)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """One grant of a root to an owner; ``epoch`` grows with every new grant of the root."""

    root_id: str
    owner: str
    epoch: int
    expires: float


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """A live server as clients see it."""

    server_id: str
    address: str
    expires: float


def _check_ttl(ttl: float) -> float:
    if not ttl > 0:
        raise ValueError(f"a lease ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


class Ownership:
    """Leases on roots and the list of live servers, kept in ``store``'s database."""

    def __init__(
        self, store: Store, *, ttl: float = 10.0, clock: Callable[[], float] | None = None
    ) -> None:
        self.store = store
        self.ttl = _check_ttl(ttl)
        self._clock = clock
        self._postgres = store.url.startswith("postgres")

    def _now(self, conn: Connection) -> float:
        if self._clock is not None:
            return self._clock()
        if self._postgres:
            return float(conn.scalar(text("SELECT extract(epoch FROM clock_timestamp())")))
        return time.time()

    # --- leases --------------------------------------------------------------------------------

    def acquire(self, root_id: str, owner: str, *, ttl: float | None = None) -> Lease | None:
        """The lease on ``root_id`` for ``owner``, or None while another owner holds it.

        Atomic on both databases (one upsert whose update runs only if the lease is free,
        expired, or already ``owner``'s): two acquirers never both get a live lease. A live
        lease of ``owner`` is extended and keeps its epoch; any other grant bumps the epoch.
        """
        span = _check_ttl(self.ttl if ttl is None else ttl)
        with self.store.transaction(f"acquire the lease on root {root_id!r}", write=True) as conn:
            now = self._now(conn)
            row = {"root_id": root_id, "owner": owner, "epoch": 1, "expires": now + span}
            stmt = self.store.insert(root_leases).values(row)
            live_mine = (_L.owner == owner) & (_L.expires > now)
            stmt = stmt.on_conflict_do_update(
                index_elements=["root_id"],
                set_={
                    "owner": owner,
                    "expires": now + span,
                    # a renewal keeps the epoch, a new grant bumps it
                    "epoch": _L.epoch + case((live_mine, 0), else_=1),
                },
                where=(_L.expires <= now) | live_mine,
            ).returning(_L.epoch, _L.expires)
            got = conn.execute(stmt).first()
        if got is None:
            return None
        return Lease(root_id, owner, int(got.epoch), float(got.expires))

    def renew(self, lease: Lease, *, ttl: float | None = None) -> Lease:
        """Extend ``lease``; LeaseLost if it expired or another grant replaced it."""
        span = _check_ttl(self.ttl if ttl is None else ttl)
        with self.store.transaction(f"renew the lease on {lease.root_id!r}", write=True) as conn:
            now = self._now(conn)
            done = conn.execute(
                update(root_leases).where(self._is_live(lease, now)).values(expires=now + span)
            )
        if done.rowcount != 1:
            raise self._lost(lease, "renew")
        return Lease(lease.root_id, lease.owner, lease.epoch, now + span)

    def release(self, lease: Lease) -> bool:
        """Give ``lease`` up at once (another server may take the root now); False if it
        was not live any more. The row stays, so the root's next epoch is still higher."""
        with self.store.transaction(f"release the lease on {lease.root_id!r}", write=True) as conn:
            now = self._now(conn)
            done = conn.execute(
                update(root_leases).where(self._is_live(lease, now)).values(expires=_RELEASED)
            )
        return done.rowcount == 1

    def owner_of(self, root_id: str) -> Lease | None:
        """The live lease on ``root_id``, if any server holds one."""
        with self.store.transaction(f"read the owner of root {root_id!r}", write=False) as conn:
            now = self._now(conn)
            row = conn.execute(
                select(root_leases).where((_L.root_id == root_id) & (_L.expires > now))
            ).first()
        return None if row is None else Lease(row.root_id, row.owner, row.epoch, row.expires)

    @contextmanager
    def fenced(self, lease: Lease, action: str) -> Iterator[Connection]:
        """A write transaction that commits only if ``lease`` is live when it starts; the
        lease row stays locked until it ends (SQLite: the write lock; PostgreSQL: FOR
        UPDATE), so no other server can take the root over in between. LeaseLost otherwise."""
        with self.store.transaction(action, write=True) as conn:
            query = select(_L.epoch).where(self._is_live(lease, self._now(conn)))
            if self._postgres:
                query = query.with_for_update()
            if conn.execute(query).first() is None:
                raise self._lost(lease, action)
            yield conn

    def renew_all(self, owner: str, *, ttl: float | None = None) -> dict[str, int]:
        """Extend every live lease of ``owner`` in one statement (a server's heartbeat);
        root -> epoch of the leases renewed. A lease missing from the answer is lost.
        Rows are locked in root order, as :meth:`lost` locks them: no deadlock between a
        server's heartbeat and its own fenced writes."""
        span = _check_ttl(self.ttl if ttl is None else ttl)
        with self.store.transaction(f"renew the leases of {owner!r}", write=True) as conn:
            now = self._now(conn)
            mine = select(_L.root_id).where((_L.owner == owner) & (_L.expires > now))
            if self._postgres:
                mine = mine.order_by(_L.root_id).with_for_update()
            rows = conn.execute(
                update(root_leases)
                .where(_L.root_id.in_(mine.scalar_subquery()))
                .values(expires=now + span)
                .returning(_L.root_id, _L.epoch)
            ).all()
        return {row.root_id: int(row.epoch) for row in rows}

    def lost(self, conn: Connection, owner: str, epochs: Mapping[str, int]) -> set[str]:
        """Inside a write transaction: the roots of ``epochs`` whose lease of that epoch is
        not ``owner``'s live one. The live ones stay locked until the transaction ends (see
        :meth:`fenced`), so the write commits under them."""
        if not epochs:
            return set()
        query = select(_L.root_id, _L.epoch).where(
            (_L.owner == owner) & _L.root_id.in_(sorted(epochs)) & (_L.expires > self._now(conn))
        )
        if self._postgres:
            query = query.order_by(_L.root_id).with_for_update()
        live = {row.root_id for row in conn.execute(query) if epochs[row.root_id] == row.epoch}
        return set(epochs) - live

    def load(self, owner: str) -> tuple[int, int, int]:
        """(live leases of ``owner``, live leases in all, live servers): bounded load's input."""
        with self.store.transaction("count the live leases", write=False) as conn:
            now = self._now(conn)
            mine, total = conn.execute(
                select(func.count().filter(_L.owner == owner), func.count()).where(_L.expires > now)
            ).one()
            servers = conn.scalar(select(func.count()).where(_S.expires > now))
        return int(mine), int(total), int(servers or 0)

    def address_of_owner(self, root_id: str) -> str | None:
        """The advertised address of the live server holding ``root_id``'s live lease (None:
        no lease, or its holder stopped sending heartbeats: it is about to expire)."""
        with self.store.transaction(f"find the owner of root {root_id!r}", write=False) as conn:
            now = self._now(conn)
            return conn.scalar(
                select(_S.address)
                .join(root_leases, _L.owner == _S.server_id)
                .where((_L.root_id == root_id) & (_L.expires > now) & (_S.expires > now))
            )

    @staticmethod
    def _is_live(lease: Lease, now: float) -> ColumnElement[bool]:
        return (
            (_L.root_id == lease.root_id)
            & (_L.owner == lease.owner)
            & (_L.epoch == lease.epoch)
            & (_L.expires > now)
        )

    @staticmethod
    def _lost(lease: Lease, action: str) -> LeaseLost:
        return LeaseLost(
            f"cannot {action}: server {lease.owner!r} no longer owns root {lease.root_id!r} "
            f"(its lease of epoch {lease.epoch} expired or was taken over)",
            "drop the root's in-memory state and route its sessions to the current owner",
        )

    # --- servers -------------------------------------------------------------------------------

    def heartbeat(self, server_id: str, address: str, *, ttl: float | None = None) -> None:
        """Say that ``server_id`` serves at ``address`` for the next ``ttl`` seconds."""
        span = _check_ttl(self.ttl if ttl is None else ttl)
        with self.store.transaction(f"register server {server_id!r}", write=True) as conn:
            now = self._now(conn)
            row = {"server_id": server_id, "address": address, "expires": now + span}
            stmt = self.store.insert(cluster_servers).values(started=now, **row)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["server_id"],
                    set_={"address": address, "expires": now + span},
                )
            )

    def deregister(self, server_id: str) -> None:
        """Take ``server_id`` off the live list and free its roots at once (a clean stop)."""
        with self.store.transaction(f"deregister server {server_id!r}", write=True) as conn:
            conn.execute(cluster_servers.delete().where(_S.server_id == server_id))
            conn.execute(
                update(root_leases)
                .where((_L.owner == server_id) & (_L.expires > _RELEASED))
                .values(expires=_RELEASED)
            )

    def live_servers(self) -> list[ServerEntry]:
        """The servers whose heartbeat has not expired, by id (a stable order for placement)."""
        with self.store.transaction("list the live servers", write=False) as conn:
            now = self._now(conn)
            rows = conn.execute(
                select(cluster_servers).where(_S.expires > now).order_by(_S.server_id)
            ).all()
        return [ServerEntry(row.server_id, row.address, row.expires) for row in rows]
