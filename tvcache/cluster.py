"""Clients of several ``tvcache serve`` processes sharing one store (issue 14).

No proxy sits on the call path: each client places a session's root on a server with the
same consistent hashing every other client uses (tvcache._placement), so all rollouts of a
task meet on one server, in one trie. A session stays on the server it was opened on; when
that server stops answering, the client marks it down, re-resolves (the store's live list,
or the rest of a fixed list) and reopens the session on the next server along the root's
ring walk, at the last node answered, resending the call with its request id. Every answered
node is in the shared store, so the new server answers what was answered before.

The server list is either fixed (``ClusterClient(["http://a:8710", ...])``) or read from the
store the servers publish themselves in (``tvcache serve --advertise``;
``ClusterClient(store_url=...)``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping, Sequence
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

    def pick(self, key: str) -> str:
        """The first server along ``key``'s ring walk that has not failed lately."""
        with self._lock:
            now = time.monotonic()
            if self._ring is None or (self._fixed is None and now - self._read > self._refresh):
                self._ring, self._read = Ring(self._live()), now
            ring = self._ring
            self._down = {url: t for url, t in self._down.items() if now - t < self._down_for}
        walk = list(ring.walk(key))
        return next((url for url in walk if url not in self._down), walk[0])

    def failed(self, url: str) -> None:
        """``url`` did not answer: route around it, and re-read the live list next time."""
        with self._lock:
            self._down[url] = time.monotonic()
            self._read = 0.0 if self._fixed is None else self._read

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _route_around(servers: Servers, url: str, error: ServiceError, *, opening: bool) -> None:
    """After ``url`` failed with ``error``: re-raise what is not a dead server; mark it down;
    an open then tries the next server, a call in a session raises "moved" (its session
    reopens on the next server and resends the call)."""
    if error.code != "unreachable":
        raise error
    servers.failed(url)
    if not opening:
        raise ServiceError(
            f"tvcache server {url} stopped answering ({error.message})",
            "the session reopens on another server at the last node answered",
            status=0,
            code="moved",
        ) from error


class _Route:
    """A session's requests: the open goes to the root's server, the rest follow it."""

    def __init__(self, cluster: ClusterClient, key: str) -> None:
        self._cluster, self._key = cluster, key
        self.url = ""

    def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        servers = self._cluster.servers
        opening = (method, path) == _OPEN
        for _ in range(self._cluster.max_servers):
            if opening or not self.url:
                self.url = servers.pick(self._key)
            try:
                return self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                _route_around(servers, self.url, error, opening=opening)
                last = error
        raise last


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
        max_servers: int = 8,
    ) -> None:
        if max_servers < 1:
            raise ValueError(f"max_servers must be at least 1, not {max_servers}")
        self.servers = Servers(servers, store_url=store_url)
        self.max_servers = max_servers  # servers tried for one open before giving up
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
        servers = self._cluster.servers
        opening = (method, path) == _OPEN
        for _ in range(self._cluster.max_servers):
            if opening or not self.url:
                self.url = await asyncio.to_thread(servers.pick, self._key)
            try:
                return await self._cluster.client(self.url).request(method, path, body)
            except ServiceError as error:
                _route_around(servers, self.url, error, opening=opening)
                last = error
        raise last


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
