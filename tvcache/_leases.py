"""The roots one server owns: claim before serving, renew in one statement, fence writes.

A server started with ``--advertise`` serves a root only while it holds the root's lease
(tvcache._ownership). :class:`Leases` is that server's side: :meth:`Leases.claim` on every
session open (refused when another live server owns the root, or when this server is full
under bounded loads), :meth:`Leases.renew` from the heartbeat, :meth:`Leases.epoch` before
every call (a local deadline: a server paused past its ttl stops serving before anyone could
have taken over), and :meth:`Leases.lost`, the store's fence: a write for a root commits
only inside a transaction that saw this server's lease of the same epoch live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from snapshots import TvcacheError
from tvcache._ownership import LeaseLost, Ownership
from tvcache._placement import capacity

__all__ = ["Claim", "Full", "Leases", "NotOwner"]

log = logging.getLogger(__name__)

DEFAULT_EPS = 0.25  # bounded loads: no server above ceil(1.25 x the average roots per server)


class NotOwner(TvcacheError):
    """Another live server owns the root: ``owner`` is its address (None: it stopped sending
    heartbeats, its lease expires within the ttl)."""

    def __init__(self, root_id: str, owner: str | None) -> None:
        where = f"server {owner}" if owner else "a server that stopped answering"
        super().__init__(
            f"root {root_id!r} is owned by {where}",
            "open the session there" if owner else "retry within the lease ttl",
        )
        self.owner = owner


class Full(TvcacheError):
    """This server holds its bounded-load share of roots: the next server of the ring takes it."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A held lease: its ``epoch``, and whether it is a new grant (``fresh``: whatever this
    server remembers of the root may be stale, reload it)."""

    epoch: int
    fresh: bool


class Leases:
    """The leases server ``server_id`` holds (thread-safe)."""

    def __init__(
        self,
        ownership: Ownership,
        server_id: str,
        *,
        eps: float = DEFAULT_EPS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        capacity(1, 1, eps)  # a bad eps fails here, not on the first open
        self._monotonic = monotonic  # tests share one controlled clock with the database
        self.ownership = ownership
        self.server_id = server_id
        self.eps = eps
        self._lock = threading.Lock()
        self._held: dict[str, tuple[int, float]] = {}  # root -> (epoch, monotonic deadline)

    @property
    def ttl(self) -> float:
        return self.ownership.ttl

    def epoch(self, root_id: str) -> int | None:
        """The epoch of this server's lease on ``root_id`` while it is surely live (its local
        deadline, started before the database granted it, has not passed), else None."""
        with self._lock:
            held = self._held.get(root_id)
        return held[0] if held is not None and self._monotonic() < held[1] else None

    def claim(self, root_id: str) -> Claim:
        """Hold ``root_id``'s lease: NotOwner while another server holds it, Full when taking
        it would put this server above its bounded-load share."""
        started = self._monotonic()
        with self._lock:
            held = self._held.get(root_id)
        if held is not None and held[1] - started > self.ttl / 2:
            return Claim(held[0], fresh=False)  # renewed lately: no round trip
        if held is None or held[1] <= started:
            mine, total, servers = self.ownership.load(self.server_id)
            if mine + 1 > capacity(total + 1, max(servers, 1), self.eps):
                held_by = self.ownership.owner_of(root_id)
                if held_by is not None and held_by.owner != self.server_id:
                    raise NotOwner(root_id, self.ownership.address_of_owner(root_id))
                raise Full(
                    f"server {self.server_id} holds {mine} of {total} roots on {servers} "
                    "servers: its bounded-load share",
                    "open the session on the next server of the root's ring walk",
                )
        lease = self.ownership.acquire(root_id, self.server_id)
        if lease is None:
            raise NotOwner(root_id, self.ownership.address_of_owner(root_id))
        with self._lock:
            self._held[root_id] = (lease.epoch, started + self.ttl)
        return Claim(lease.epoch, fresh=held is None or held[0] != lease.epoch)

    def renew(self) -> set[str]:
        """Renew every held lease (one statement); the roots lost since (forgotten here).
        A root claimed while the statement ran is left alone: its claim is newer."""
        started = self._monotonic()
        with self._lock:
            before = {r: epoch for r, (epoch, _) in self._held.items()}
        renewed = self.ownership.renew_all(self.server_id)
        with self._lock:
            lost = set()
            for root_id, epoch in before.items():
                now = self._held.get(root_id)
                if now is None or now[0] != epoch:
                    continue  # given up or claimed anew meanwhile
                if renewed.get(root_id) == epoch:
                    self._held[root_id] = (epoch, max(now[1], started + self.ttl))
                else:
                    lost.add(root_id)
                    del self._held[root_id]
        if lost:
            log.warning("tvcache: lost the lease on %d root(s): %s", len(lost), sorted(lost))
        return lost

    def lost(self, conn: Connection, root_ids: Collection[str]) -> set[str]:
        """The store's fence, inside its write transaction: which of ``root_ids`` this server
        does not hold at the epoch it serves them with (their writes must not commit)."""
        with self._lock:
            epochs = {r: self._held[r][0] for r in root_ids if r in self._held}
        gone = self.ownership.lost(conn, self.server_id, epochs)
        return gone | {r for r in root_ids if r not in epochs}

    def refuse(self, root_ids: Collection[str], action: str) -> LeaseLost:
        """The error a fenced write raises (the service answers it with ``moved``)."""
        with self._lock:
            for root_id in root_ids:
                self._held.pop(root_id, None)
        shown = ", ".join(repr(r) for r in sorted(root_ids))
        return LeaseLost(
            f"cannot {action}: server {self.server_id!r} no longer owns root {shown}",
            "the session reopens on the root's current owner",
        )
