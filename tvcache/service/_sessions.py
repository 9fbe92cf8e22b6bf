"""Remote sessions: in-order calls, retries answered from the first try, idle sessions reaped.

Every call carries ``seq`` (1, 2, ... per session) and a ``request_id``. A call whose ``seq``
is the next one runs; one that repeats the last ``seq`` with the same ``request_id`` is a
retry and gets that call's answer (awaiting it if it still runs), so a dropped connection
never makes a call execute twice. Anything else is refused: calls apply in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from sandbox import JSON, RootSpec
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._session import CallResult, Session
from tvcache.service._errors import (
    BadRoot,
    NodeNotFound,
    OutOfOrder,
    SessionConflict,
    SessionNotFound,
)

log = logging.getLogger("tvcache.service")


@dataclass(slots=True)
class Remote:
    """A session and its last call: the ``seq``, ``request_id`` and task that answers it."""

    session_id: str
    session: Session
    last_used: float
    seq: int = 0
    request_id: str | None = None
    task: asyncio.Future[CallResult] | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


def _resume(session: Session, node_id: str) -> None:
    """Put ``session`` at a node this server answered before (a retry after a restart)."""
    node = session.engine.graph.get(node_id)
    if node is None or node.root_id != session.root_id or (node.parent and not node.observation):
        session.close()
        raise NodeNotFound(
            f"node {node_id!r} is not a cached node of this root",
            "pass a node_id this server answered for the same task and template",
            field="at_node",
        )
    session.resume(node)


def _retrieve(task: asyncio.Future[CallResult]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a retry re-raises it, nobody else needs the warning


class Registry:
    """The open sessions of one server. Used from the event loop only (no locks needed)."""

    def __init__(self, engine: Engine, idle_seconds: float) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Remote] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Remote:
        remote = self._sessions.get(session_id)
        if remote is None:
            raise SessionNotFound(
                f"no open session {session_id!r}",
                "it was closed, reaped after being idle, or the server restarted: open a new "
                "one (pass at_node to resume at the last node you were answered)",
            )
        return remote

    async def open(self, spec: RootSpec, session_id: str | None, at_node: str | None) -> Remote:
        """A new session; an open retried with the same ``session_id`` gets the same one."""
        try:
            session = await asyncio.to_thread(self.engine.session, spec)
        except TvcacheError as error:
            raise BadRoot(error.message, error.hint, field="template") from error
        existing = self._sessions.get(session_id) if session_id else None
        if existing is not None:
            session.close()  # no sandbox yet: nothing to wait for
            if existing.session.root_id != session.root_id:
                raise SessionConflict(
                    f"session {session_id!r} is open on another root", field="session_id"
                )
            return existing
        if at_node is not None:
            _resume(session, at_node)
        remote = Remote(session_id or uuid.uuid4().hex, session, time.monotonic())
        self._sessions[remote.session_id] = remote
        return remote

    async def call(
        self, session_id: str, seq: int, request_id: str, tool: str, args: dict[str, JSON]
    ) -> CallResult:
        remote = self.get(session_id)
        if seq == remote.seq and request_id == remote.request_id and remote.task is not None:
            task = remote.task  # a retry: the first try's answer
        elif seq == remote.seq + 1:
            if remote.busy:
                raise OutOfOrder(
                    f"call {remote.seq} of this session is still running",
                    f"wait for it (retry it with seq {remote.seq} and its request_id)",
                    field="seq",
                )
            task = asyncio.ensure_future(remote.session.acall(tool, **args))
            task.add_done_callback(_retrieve)
            remote.seq, remote.request_id, remote.task = seq, request_id, task
        else:
            raise OutOfOrder(
                f"seq {seq} is out of order: the next call of this session is {remote.seq + 1}",
                f"a retry repeats seq {remote.seq} with the same request_id; calls apply in order",
                field="seq",
            )
        remote.last_used = time.monotonic()
        try:
            return await asyncio.shield(task)
        finally:
            remote.last_used = time.monotonic()

    async def close(self, session_id: str) -> None:
        remote = self._sessions.pop(session_id, None)
        if remote is None:
            raise SessionNotFound(f"no open session {session_id!r}", "it is already closed")
        await self._close(remote)

    async def _close(self, remote: Remote) -> None:
        if remote.task is not None:
            with contextlib.suppress(BaseException):
                await remote.task
        await asyncio.to_thread(remote.session.close)

    async def reap(self) -> int:
        """Close sessions idle for ``idle_seconds`` (their worker died or forgot them)."""
        now = time.monotonic()
        idle = [
            r
            for r in self._sessions.values()
            if not r.busy and now - r.last_used >= self.idle_seconds
        ]
        for remote in idle:
            self._sessions.pop(remote.session_id, None)
        for remote in idle:
            log.info("closing session %s: idle for %.0f s", remote.session_id, self.idle_seconds)
            await self._close(remote)
        return len(idle)

    async def reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(max(self.idle_seconds / 4, 0.05), 5.0))
            await self.reap()

    async def close_all(self, grace: float) -> None:
        """Shutdown: let running calls finish (up to ``grace`` s), then close every session."""
        remotes, self._sessions = list(self._sessions.values()), {}
        running = [r.task for r in remotes if r.busy and r.task is not None]
        if running:
            _done, late = await asyncio.wait(running, timeout=grace)
            if late:
                log.warning("shutdown: %d calls still running after %.0f s", len(late), grace)
        await asyncio.gather(*(asyncio.to_thread(r.session.close) for r in remotes))
