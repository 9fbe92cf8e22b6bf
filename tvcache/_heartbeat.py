"""A serving process's entry on the store's list of live servers, and its leases (issue 14).

Clients that route by the store (``ClusterClient(store_url=...)``) read that list; an entry
not renewed within ``ttl`` seconds (the process died, its host is cut off) drops out of it.
Each beat also renews every root lease the server holds, in one statement.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from snapshots import TvcacheError
from tvcache._leases import Leases
from tvcache._ownership import Ownership
from tvcache._store import Store

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """Publish ``address`` under a fresh server id every ``ttl / 3`` seconds until stopped,
    and renew the server's ``leases`` with it."""

    def __init__(self, store: Store, address: str, *, ttl: float = 10.0) -> None:
        self.ownership = Ownership(store, ttl=ttl)
        self.server_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.address = address
        self.leases = Leases(self.ownership, self.server_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tvcache-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        """Publish once before returning (clients can find the server at once), then keep on."""
        self.ownership.heartbeat(self.server_id, self.address)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.ownership.ttl / 3):
            try:
                self.ownership.heartbeat(self.server_id, self.address)
                self.leases.renew()
            except TvcacheError as error:  # the store is away: clients skip us until it is back
                log.warning("tvcache: cannot renew this server's entry in the store: %s", error)

    def stop(self) -> None:
        """Leave the list at once (clients stop routing here) rather than after ``ttl``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            self.ownership.deregister(self.server_id)
        except TvcacheError as error:
            log.warning("tvcache: cannot remove this server from the store's list: %s", error)
