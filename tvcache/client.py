"""Clients of ``tvcache serve``: remote sessions with the in-process session API.

``Client(url).session(task_id, template=...)`` returns a session whose ``call(tool, **args)``
returns the same :class:`~tvcache.CallResult` an in-process session does. Calls of one
session issued concurrently (threads on a :class:`RemoteSession`, ``asyncio.gather`` on an
:class:`AsyncRemoteSession`) are sent one at a time, in the order they were issued. Every call
carries a ``request_id`` and a ``seq``, numbered when it is sent: a call refused or failed
takes no ``seq``. A retry after a timeout or a dropped connection resends both, and the server
answers it from the first try, so no call ever executes twice. When the server forgot the
session (restarted, even several times, or reaped it while idle), the session reopens at the
last node it was answered and goes on: answered calls are durable, so nothing is lost.

:class:`CachedExecutor` wraps a session as a sandbox with ``execute(command) -> str``, so an
agent loop written against such a sandbox changes one line.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol, Self

import httpx

from sandbox import JSON, Observation, ToolCallError
from snapshots import TvcacheError
from tvcache._engine import RootNotFoundError
from tvcache._session import CallResult, SessionClosedError
from tvcache._turns import Turns

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "AsyncRemoteSession",
    "AsyncRequester",
    "CachedExecutor",
    "Client",
    "ExecOutput",
    "RemoteSession",
    "Requester",
    "ServiceError",
    "ToolSession",
]

DEFAULT_URL = "http://127.0.0.1:8710"
_RETRY_STATUS = frozenset({502, 503, 504})
# "moved": a cluster client's server stopped answering; the session reopens on another
_LOST = frozenset({"session_not_found", "unreachable", "moved"})
# the server's session is gone or disagrees on the seq: resend in a session reopened at the
# last node answered (right whatever the old one holds; nothing can stay wedged)
_REOPEN = frozenset({"session_not_found", "out_of_order", "moved"})
_REOPENS = 5  # a call resent to that many reopened sessions (servers restarting) at most


class ServiceError(TvcacheError):
    """The service refused a request or could not be reached (``status`` 0, ``unreachable``)."""

    def __init__(
        self,
        message: str,
        hint: str | None,
        *,
        status: int,
        code: str,
        field: str | None = None,
        owner: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.status, self.code, self.field = status, code, field
        self.owner = owner  # "not_owner": the URL of the server that owns the root


class Requester(Protocol):
    """What a remote session sends its requests through: a :class:`Client`, or a cluster
    client's route that picks the server (tvcache.cluster)."""

    url: str

    def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any: ...


class AsyncRequester(Protocol):
    """The asyncio twin of :class:`Requester`."""

    url: str

    async def request(
        self, method: str, path: str, body: Mapping[str, JSON] | None = None
    ) -> Any: ...


class ToolSession(Protocol):
    """What an agent loop needs of a session, in-process or remote."""

    def call(self, tool: str, /, **args: JSON) -> CallResult: ...

    def close(self) -> None: ...


def _error(response: httpx.Response) -> TvcacheError:
    """The exception an in-process session would have raised, where there is one."""
    try:
        body = response.json()["error"]
        message, hint, code, field = body["message"], body["hint"], body["code"], body["field"]
        owner = body.get("owner")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, hint, code, field, owner = response.text[:500], None, "http", None, None
    if code == "tool_call":
        return ToolCallError(message, hint)
    if code == "root_not_found":
        return RootNotFoundError(message, hint)
    return ServiceError(
        message, hint, status=response.status_code, code=code, field=field, owner=owner
    )


def _unreachable(url: str, error: httpx.TransportError, tries: int) -> ServiceError:
    return ServiceError(
        f"tvcache service at {url} did not answer after {tries} tries: {error!r}",
        "is `tvcache serve` running there? (the session resumes on its next call)",
        status=0,
        code="unreachable",
    )


def _http_args(url: str, token: str | None, timeout: float | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Timeout(timeout, connect=None if timeout is None else min(timeout, 10.0))
    return {"base_url": url, "headers": headers, "timeout": limits}


def _answer(response: httpx.Response | None, attempt: int, retries: int) -> Any:
    """The JSON of a final answer; None when the request should be retried."""
    if response is None or (response.status_code in _RETRY_STATUS and attempt < retries):
        return None
    if response.is_error:
        raise _error(response)
    return response.json()


class _State:
    """Root spec, position and last answered ``seq`` of a remote session (both twins)."""

    def __init__(
        self, task_id: str, template: str | None, options: Mapping[str, JSON], backend: str | None
    ) -> None:
        self.spec: dict[str, JSON] = {"task_id": task_id, "template": template}
        self.spec["options"] = dict(options)
        if backend is not None:
            self.spec["backend"] = backend
        self.session_id = ""
        self.root_id = ""
        self.node_id: str | None = None
        self.seq = 0
        self.lost = True  # not opened yet, or the server may have forgotten it
        self.closed = False

    def open_body(self) -> dict[str, JSON]:
        """A fresh session id, at the last node answered (the root on the first open)."""
        return {**self.spec, "session_id": uuid.uuid4().hex, "at_node": self.node_id}

    def opened(self, data: Mapping[str, Any]) -> None:
        self.session_id, self.root_id = str(data["session_id"]), str(data["root_id"])
        self.node_id, self.seq, self.lost = str(data["node_id"]), int(data["seq"]), False

    @property
    def calls_path(self) -> str:
        return f"/v1/sessions/{self.session_id}/calls"

    def next_call(self, tool: str, args: Mapping[str, JSON]) -> dict[str, JSON]:
        """A new call; its ``seq`` is given by :meth:`numbered` each time it is sent."""
        if self.closed:
            raise SessionClosedError("this session is closed", "open a new one")
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ToolCallError(
                f"the arguments of {tool!r} are not JSON: {error}",
                "pass strings, numbers, booleans, None, lists and dicts with string keys",
            ) from error
        return {"tool": tool, "args": dict(args), "request_id": uuid.uuid4().hex}

    def numbered(self, body: Mapping[str, JSON]) -> dict[str, JSON]:
        """``body`` with the next ``seq`` of the session as opened now (a resend after a
        reopen keeps its request id and takes the reopened session's next ``seq``)."""
        return {**body, "seq": self.seq + 1}

    def failed(self, error: ServiceError, *, last: bool) -> None:
        """Re-raise ``error`` unless the server forgot the session (or disagrees on the
        seq) and this was not the ``last`` try (then: reopen, resend).

        Either way an answer, if there was one, was never seen: the session resumes at the
        last node it was answered, and the ``seq`` stays free for the next call.
        """
        if error.code in _LOST | _REOPEN:
            self.lost = True
        if error.code not in _REOPEN or last:
            raise error

    def interrupted(self) -> None:
        """The caller gave up mid-request (cancelled, interrupted): the call may run on the
        server without its answer ever being seen here, so the next call resumes at the last
        node answered in a session of its own rather than guess what the old one holds."""
        self.lost = True

    def answered(self, data: Mapping[str, Any]) -> CallResult:
        result = CallResult(
            Observation.from_dict(data["observation"]),
            bool(data["hit"]),
            str(data["node_id"]),
            float(data["seconds_saved"]),
            bool(data["tainted"]),
        )
        self.node_id, self.seq = result.node_id, int(data["seq"])
        return result

    def closing(self) -> str | None:
        """The path to DELETE, or None when there is nothing to close on the server."""
        was_open = not self.closed and not self.lost
        self.closed = True
        return f"/v1/sessions/{self.session_id}" if was_open else None


class Client:
    """A synchronous client. ``timeout`` bounds one HTTP request (a call that runs longer is
    retried, and the retry waits for the same execution); ``retries`` counts retries."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = 660.0,
        retries: int = 5,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, self.retries, self.backoff = url, retries, backoff
        self._http = httpx.Client(**_http_args(url, token, timeout), transport=transport)

    def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        """One request, retried on transport errors and 502/503/504; the JSON answer."""
        for attempt in range(self.retries + 1):
            try:
                response: httpx.Response | None = self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise _unreachable(self.url, error, attempt + 1) from error
                response = None
            data = _answer(response, attempt, self.retries)
            if data is not None:
                return data
            time.sleep(min(self.backoff * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def session(
        self,
        task_id: str,
        /,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        backend: str | None = None,
    ) -> RemoteSession:
        """A session on the root (``template`` is a path or image on the server's side)."""
        session = RemoteSession(self, _State(task_id, template, options or {}, backend))
        session.reopen()
        return session

    def health(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/health"))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/stats"))

    def tree(self, root_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/roots/{root_id}/tree"))

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        response = self._http.get("/metrics")
        if response.is_error:
            raise _error(response)
        return response.text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteSession:
    """A session on the server, with the in-process session's API. Calls from several
    threads (or ``acall`` under ``asyncio.gather``) run one at a time in the order issued."""

    def __init__(self, client: Requester, state: _State) -> None:
        self._client = client
        self._state = state
        self._turns = Turns()

    @property
    def session_id(self) -> str:
        return self._state.session_id

    @property
    def server(self) -> str:
        """The URL of the server the session is on (a cluster client may move it)."""
        return self._client.url

    @property
    def root_id(self) -> str:
        return self._state.root_id

    @property
    def node_id(self) -> str | None:
        return self._state.node_id

    def reopen(self) -> None:
        """Open on the server, at the last node this session was answered."""
        self._state.opened(self._client.request("POST", "/v1/sessions", self._state.open_body()))

    def call(self, tool: str, /, **args: JSON) -> CallResult:
        """Serve one tool call (see :meth:`tvcache.Session.call`); never executed twice.
        Waits for the calls issued before it."""
        with self._turns.turn():
            return self._call(tool, args)

    def _call(self, tool: str, args: Mapping[str, JSON]) -> CallResult:
        body = self._state.next_call(tool, args)
        for attempt in range(_REOPENS):
            if self._state.lost:
                self.reopen()
            try:
                data = self._client.request(
                    "POST", self._state.calls_path, self._state.numbered(body)
                )
            except ServiceError as error:
                self._state.failed(error, last=attempt == _REOPENS - 1)
                continue
            except TvcacheError:
                raise  # the server's answer: nothing ran
            except BaseException:
                self._state.interrupted()
                raise
            return self._state.answered(data)
        raise AssertionError("unreachable")

    async def acall(self, tool: str, /, **args: JSON) -> CallResult:
        """:meth:`call` in a worker thread (asyncio code may prefer :class:`AsyncClient`);
        its place in the order is taken when the coroutine starts."""
        ticket = self._turns.take()
        return await self._turns.in_thread(ticket, lambda: self._call(tool, args))

    def close(self) -> None:
        """Close on the server, destroying its sandbox. Idempotent."""
        path = self._state.closing()
        if path is not None:
            try:
                self._client.request("DELETE", path)
            except ServiceError as error:
                if error.code not in _LOST:
                    raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of :class:`Client`; its sessions have ``acall`` and ``aclose``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float | None = 660.0,
        retries: int = 5,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.retries, self.backoff = url, retries, backoff
        self._http = httpx.AsyncClient(**_http_args(url, token, timeout), transport=transport)

    async def request(self, method: str, path: str, body: Mapping[str, JSON] | None = None) -> Any:
        """See :meth:`Client.request`."""
        for attempt in range(self.retries + 1):
            try:
                response: httpx.Response | None = await self._http.request(method, path, json=body)
            except httpx.TransportError as error:
                if attempt == self.retries:
                    raise _unreachable(self.url, error, attempt + 1) from error
                response = None
            data = _answer(response, attempt, self.retries)
            if data is not None:
                return data
            await asyncio.sleep(min(self.backoff * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    async def session(
        self,
        task_id: str,
        /,
        *,
        template: str | None = None,
        options: Mapping[str, JSON] | None = None,
        backend: str | None = None,
    ) -> AsyncRemoteSession:
        session = AsyncRemoteSession(self, _State(task_id, template, options or {}, backend))
        await session.reopen()
        return session

    async def stats(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/v1/stats"))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncRemoteSession:
    """A remote session for asyncio code: ``await session.acall(tool, **args)``. Calls
    awaited together (``asyncio.gather``) run one at a time, in the order they started."""

    def __init__(self, client: AsyncRequester, state: _State) -> None:
        self._client = client
        self._state = state
        self._turn = asyncio.Lock()  # wakes its waiters first come, first served

    @property
    def session_id(self) -> str:
        return self._state.session_id

    @property
    def server(self) -> str:
        """The URL of the server the session is on (a cluster client may move it)."""
        return self._client.url

    @property
    def root_id(self) -> str:
        return self._state.root_id

    @property
    def node_id(self) -> str | None:
        return self._state.node_id

    async def reopen(self) -> None:
        body = self._state.open_body()
        self._state.opened(await self._client.request("POST", "/v1/sessions", body))

    async def acall(self, tool: str, /, **args: JSON) -> CallResult:
        """See :meth:`RemoteSession.call`."""
        async with self._turn:
            body = self._state.next_call(tool, args)
            for attempt in range(_REOPENS):
                if self._state.lost:
                    await self.reopen()
                path, numbered = self._state.calls_path, self._state.numbered(body)
                try:
                    data = await self._client.request("POST", path, numbered)
                except ServiceError as error:
                    self._state.failed(error, last=attempt == _REOPENS - 1)
                    continue
                except TvcacheError:
                    raise  # the server's answer: nothing ran
                except BaseException:
                    self._state.interrupted()
                    raise
                return self._state.answered(data)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        path = self._state.closing()
        if path is not None:
            try:
                await self._client.request("DELETE", path)
            except ServiceError as error:
                if error.code not in _LOST:
                    raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ExecOutput(str):
    """What ``execute`` returns: the output text (stdout and stderr merged, as the ``bash``
    tool gives it) as a ``str``, with ``exit_code``, ``hit`` and the whole ``result``."""

    exit_code: int
    hit: bool
    result: CallResult

    def __new__(cls, result: CallResult) -> Self:
        text = super().__new__(cls, result.output)
        text.exit_code, text.hit, text.result = result.exit_code, result.hit, result
        return text


class CachedExecutor:
    """A sandbox with ``execute(command) -> str`` whose commands go through the cache.

    Replace ``sandbox = MySandbox(...)`` with ``sandbox = CachedExecutor(client.session(task,
    template=...))`` (an in-process session works too); ``sandbox.execute("ls")`` returns an
    :class:`ExecOutput`.
    """

    def __init__(self, session: ToolSession, *, tool: str = "bash") -> None:
        self.session = session
        self.tool = tool

    def execute(self, command: str, timeout: float | None = None) -> ExecOutput:
        args: dict[str, JSON] = {"command": command}
        if timeout is not None:
            args["timeout"] = timeout
        return ExecOutput(self.session.call(self.tool, **args))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
