"""Clients of several ``tvcache serve`` processes sharing one store (issue 14).

No proxy sits on the call path: each client places a session's root on a server with the
same consistent hashing every other client uses (tvcache._placement), so all rollouts of a
task meet on one server, in one trie. A session stays on the server it was opened on; when
that server stops answering, the client marks it down, re-resolves (the store's live list,
or the rest of a fixed list) and reopens the session on the next server along the root's
ring walk, at the last node answered, resending the call with its request id. Every answered
node is in the shared store, so the new server answers what was answered before.

Servers started with ``--advertise`` own roots by lease: a server that does not own a root
answers an open with ``not_owner`` and the owner's URL, which the client follows (and
remembers for the root); one that holds its bounded-load share answers ``full`` and the
client walks on along the ring; a server that lost a root's lease answers ``moved`` and the
session reopens at its owner. While a dead server's lease runs out, opens wait and retry.

The server list is either fixed (``ClusterClient(["http://a:8710", ...])``) or read from the
store the servers publish themselves in (``tvcache serve --advertise``;
``ClusterClient(store_url=...)``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar

from sandbox import JSON
from tvcache._ownership import Ownership
from tvcache._placement import Ring
from tvcache._store import Store
from tvcache.client import (
    AsyncClient,
    AsyncRemoteSession,
    Client,
    RemoteSession,
    ServiceError,
    _State,
)

__all__ = ["AsyncClusterClient", "ClusterClient", "Servers", "routing_key"]

_OPEN = ("POST", "/v1/sessions")
_C = TypeVar("_C", Client, AsyncClient)


def routing_key(spec: Mapping[str, JSON]) -> str:
    """What a root is placed by: the spec as the client gives it (task, template, options,
    backend), canonical, so every client computes the same key for the same root."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


class Servers:
    """The servers to route over, and which of them failed lately (thread-safe)."""

    def __init__(
        self,
        servers: Sequence[str] | None = None,
        *,
        store_url: str | None = None,
        refresh: float = 5.0,
        down_for: float = 30.0,
    ) -> None:
        if (servers is None) == (store_url is None):
            raise ValueError(
                "give either a list of server URLs or the store_url the servers advertise in "
                "(tvcache serve --advertise), not both and not neither"
            )
        if servers is not None and not servers:
            raise ValueError("the list of servers is empty; give at least one server URL")
        self._fixed = [url.rstrip("/") for url in servers] if servers is not None else None
        self._store = Store(store_url) if store_url is not None else None
        self._refresh, self._down_for = refresh, down_for
        self._lock = threading.Lock()
        self._down: dict[str, float] = {}
        self._ring: Ring | None = None
        self._read = 0.0

    def _live(self) -> list[str]:
        if self._fixed is not None:
            return self._fixed
        assert self._store is not None
        urls = [entry.address for entry in Ownership(self._store).live_servers()]
        if not urls:
            raise ServiceError(
                f"no tvcache server is advertised in the store {self._store.url}",
                "start servers with `tvcache serve --advertise` and the same TVCACHE_STORE_URL",
                status=0,
                code="unreachable",
            )
        return urls

    def pick(self, key: str, skip: Collection[str] = ()) -> str:
        """The first server along ``key``'s ring walk that has not failed lately and is not
        in ``skip`` (full ones); the preferred one if all are."""
        walk = list(self._current().walk(key))
        return next((url for url in walk if url not in self._down and url not in skip), walk[0])

    def _current(self) -> Ring:
        with self._lock:
            now = time.monotonic()
            if self._ring is None or (self._fixed is None and now - self._read > self._refresh):
                self._ring, self._read = Ring(self._live()), now
            self._down = {url: t for url, t in self._down.items() if now - t < self._down_for}
            return self._ring

    def known(self) -> list[str]:
        """The servers routed over now."""
        return self._current().servers

    def is_down(self, url: str) -> bool:
        """Whether ``url`` failed within the last ``down_for`` seconds."""
        with self._lock:
            failed = self._down.get(url)
        return failed is not None and time.monotonic() - failed < self._down_for

    def failed(self, url: str) -> None:
        """``url`` did not answer: route around it, and re-read the live list next time."""
        with self._lock:
            self._down[url] = time.monotonic()
            self._read = 0.0 if self._fixed is None else self._read

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class _Walk:
    """Where one open of a root goes next: the owner a server named, else the root's
    remembered owner, else the first server along its ring walk that is neither down nor
    full. Gives up (re-raises) after ``cluster.owner_wait`` seconds or on any other error."""

    def __init__(self, cluster: _Cluster[Any], key: str) -> None:
        self._cluster, self._key = cluster, key
        self._full: set[str] = set()
        self._hop: str | None = None
        self._waits = 0
        self._deadline = time.monotonic() + cluster.owner_wait

    def next_url(self) -> str:
        servers = self._cluster.servers
        if self._hop is not None:
            url, self._hop = self._hop, None
            return url
        known = self._cluster.owners.get(self._key)
        if known is not None and not servers.is_down(known) and known not in self._full:
            return known
        return servers.pick(self._key, self._full)

    def opened(self, url: str) -> None:
        self._cluster.owners[self._key] = url

    def failed(self, url: str, error: ServiceError) -> float:
        """After the open at ``url`` failed with ``error``: seconds to wait before the next
        try (0: at once); re-raises ``error`` when it is not about where the root lives."""
        servers = self._cluster.servers
        _forget(self._cluster, self._key, url)
        delay = 0.0
        if error.code == "unreachable":
            servers.failed(url)
        elif error.code == "not_owner" and error.owner and not servers.is_down(error.owner):
            self._hop = error.owner.rstrip("/")  # the owner: follow it
        elif error.code == "full" and len(self._full) + 1 < len(servers.known()):
            self._full.add(url)
        elif error.code in ("not_owner", "full", "moved"):  # a dead owner's lease runs
            # out; all servers are full; the server lost the lease while opening
            self._full.clear()
            delay = min(0.05 * 2**self._waits, 1.0)
            self._waits += 1
        else:
            raise error
        if time.monotonic() + delay > self._deadline:
            raise error
        return delay


def _forget(cluster: _Cluster[Any], key: str, url: str) -> None:
    """``url`` no longer serves the root of ``key``: stop going there first."""
    if cluster.owners.get(key) == url:
        cluster.owners.pop(key, None)


def _moved(cluster: _Cluster[Any], key: str, url: str, error: ServiceError) -> ServiceError:
    """A call at ``url`` failed with ``error``: re-raise what does not move the session;
    else the error whose "moved" makes it reopen at the root's owner and resend the call."""
    if error.code not in ("unreachable", "moved", "not_owner"):
        return error
    _forget(cluster, key, url)
    if error.code != "unreachable":  # the server lost the root: reopen at its owner
        return ServiceError(
            error.message, error.hint, status=error.status, code="moved", owner=error.owner
        )
    cluster.servers.failed(url)
    return ServiceError(
        f"tvcache server {url} stopped answering ({error.message})",
        "the session reopens on another server at the last node answered",
        status=0,
        code="moved",
    )


class _Route:
    """A session's requests: the open goes to the root's owner, the rest follow it."""

    def __init__(self, cluster: ClusterClient, key: str) -> None:
        self._cluster, self._key = cluster, key
        self.url = ""

    def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        if (method, path) != _OPEN and self.url:
            try:
                return self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                raise _moved(self._cluster, self._key, self.url, error) from error
        walk = _Walk(self._cluster, self._key)
        while True:
            self.url = walk.next_url()
            try:
                answer = self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                time.sleep(walk.failed(self.url, error))
                continue
            walk.opened(self.url)
            return answer


class _Cluster(Generic[_C]):
    """What both cluster clients hold: the servers and how to talk to each."""

    def __init__(
        self,
        servers: Sequence[str] | None = None,
        *,
        store_url: str | None = None,
        token: str | None = None,
        timeout: float | None = 660.0,
        retries: int = 2,
        owner_wait: float = 60.0,
    ) -> None:
        if not owner_wait > 0:
            raise ValueError(
                f"owner_wait must be a positive number of seconds (above the servers' lease "
                f"ttl), not {owner_wait!r}"
            )
        self.servers = Servers(servers, store_url=store_url)
        self.owner_wait = owner_wait  # how long an open waits for a root's owner to answer
        self.owners: dict[str, str] = {}  # routing key -> the server that owns it, last seen
        self._args: dict[str, Any] = {"token": token, "timeout": timeout, "retries": retries}
        self._clients: dict[str, _C] = {}  # one per server, so its connections are reused
        self._lock = threading.Lock()


class ClusterClient(_Cluster[Client]):
    """:class:`~tvcache.client.Client` over several servers: same sessions, routed by root."""

    def client(self, url: str) -> Client:
        """The client of one server (kept, so its connections are reused)."""
        with self._lock:
            if url not in self._clients:
                self._clients[url] = Client(url, **self._args)
            return self._clients[url]

    def session(
        self,
        task_id: str,
        /,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        backend: str | None = None,
    ) -> RemoteSession:
        """A session on the server that owns the root (see :meth:`Client.session`)."""
        state = _State(task_id, template, options or {}, backend)
        session = RemoteSession(_Route(self, routing_key(state.spec)), state)
        session.reopen()
        return session

    def server_of(self, session: RemoteSession) -> str:
        """The URL of the server ``session`` is on now."""
        return session.server

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.servers.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncRoute:
    """:class:`_Route` for asyncio (the store read, rare, runs in a thread)."""

    def __init__(self, cluster: AsyncClusterClient, key: str) -> None:
        self._cluster, self._key = cluster, key
        self.url = ""

    async def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        if (method, path) != _OPEN and self.url:
            try:
                return await self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                raise _moved(self._cluster, self._key, self.url, error) from error
        walk = _Walk(self._cluster, self._key)
        while True:
            self.url = await asyncio.to_thread(walk.next_url)
            try:
                answer = await self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                await asyncio.sleep(walk.failed(self.url, error))
                continue
            walk.opened(self.url)
            return answer


class AsyncClusterClient(_Cluster[AsyncClient]):
    """The asyncio twin of :class:`ClusterClient`."""

    def client(self, url: str) -> AsyncClient:
        if url not in self._clients:  # one event loop: no lock needed
            self._clients[url] = AsyncClient(url, **self._args)
        return self._clients[url]

    async def session(
        self,
        task_id: str,
        /,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        backend: str | None = None,
    ) -> AsyncRemoteSession:
        state = _State(task_id, template, options or {}, backend)
        route = _AsyncRoute(self, routing_key(state.spec))
        session = AsyncRemoteSession(route, state)
        await session.reopen()
        return session

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self.servers.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
