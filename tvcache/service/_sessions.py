"""Remote sessions: in-order calls, retries answered from the first try, idle sessions reaped.

Every call carries ``seq`` (1, 2, ... per session) and a ``request_id``. Calls of a session
execute one at a time in ``seq`` order, whatever order their requests arrive in: the next
``seq`` waits for the call before it to end; a later one waits (``order_seconds`` at most)
for the call before it to arrive. One that repeats the last ``seq`` with the same
``request_id`` is a retry and gets that call's answer (awaiting it if it still runs), so a
dropped connection never makes a call execute twice. A refused call (bad tool call) takes no
``seq``; one that failed leaves the session where it was, so its ``seq`` may be used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sandbox import JSON, RootSpec
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._leases import Full, NotOwner
from tvcache._session import CallResult, Session
from tvcache.service._errors import (
    BadRoot,
    Moved,
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
    waiting: Counter[int] = field(default_factory=Counter)  # seqs of requests not yet started
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: int | None = None  # of the root's lease it was opened under (a cluster server)

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def takes(self, seq: int) -> bool:
        """Whether a new call with ``seq`` may start once nothing runs: the next seq, or the
        seq of a last call that failed (it left the session where it was)."""
        failed = self.task is not None and self.task.done() and _failed(self.task)
        return seq == self.seq + 1 or (failed and seq == self.seq)

    def poke(self) -> None:
        """Wake every request waiting for its turn: something changed."""
        self.changed.set()
        self.changed = asyncio.Event()


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


def _failed(task: asyncio.Future[CallResult]) -> bool:
    return task.cancelled() or task.exception() is not None


def _retrieve(task: asyncio.Future[CallResult]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a retry re-raises it, nobody else needs the warning


class Registry:
    """The open sessions of one server. Used from the event loop only (no locks needed)."""

    def __init__(self, engine: Engine, idle_seconds: float, order_seconds: float = 2.0) -> None:
        self.engine = engine
        self.idle_seconds = idle_seconds
        self.order_seconds = order_seconds
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
        except (NotOwner, Full):
            raise  # answered as such: the client goes to the owner, or on along the ring
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
            if self.engine.graph.get(at_node) is None:  # recorded by another server since?
                await asyncio.to_thread(self.engine.catch_up, at_node)
            _resume(session, at_node)
        remote = Remote(session_id or uuid.uuid4().hex, session, time.monotonic())
        if self.engine.leases is not None:
            remote.epoch = self.engine.leases.epoch(session.root_id)
        self._sessions[remote.session_id] = remote
        return remote

    async def call(
        self, session_id: str, seq: int, request_id: str, tool: str, args: dict[str, JSON]
    ) -> CallResult:
        """The answer of call ``seq``, started in its turn (see the module docstring)."""
        remote = self.get(session_id)
        if self.engine.leases is not None:
            await self._still_owned(remote)
        self.engine.key_of(tool, args)  # a bad tool call is refused before it takes a seq
        remote.last_used = time.monotonic()
        remote.waiting[seq] += 1
        remote.poke()
        try:
            task = await self._turn(remote, seq, request_id, tool, args)
        finally:
            remote.waiting[seq] -= 1
            if not remote.waiting[seq]:
                del remote.waiting[seq]
            remote.poke()
            remote.last_used = time.monotonic()
        try:
            return await asyncio.shield(task)
        finally:
            remote.last_used = time.monotonic()

    async def _turn(
        self, remote: Remote, seq: int, request_id: str, tool: str, args: dict[str, JSON]
    ) -> asyncio.Future[CallResult]:
        """The task answering call ``seq``: the first try's for a retry, else a new one once
        the call before it ended. Refused when ``seq`` is taken, or when the call before it
        did not arrive within ``order_seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.order_seconds
        while True:
            if self._sessions.get(remote.session_id) is not remote:
                raise SessionNotFound(
                    f"session {remote.session_id!r} was closed while call {seq} waited for "
                    "its turn",
                    "open a new one (pass at_node to resume at the last node you were answered)",
                )
            changed = remote.changed
            if seq == remote.seq and request_id == remote.request_id and remote.task is not None:
                return remote.task  # a retry: the first try's answer
            if remote.takes(seq) and not remote.busy:
                task = asyncio.ensure_future(remote.session.acall(tool, **args))
                task.add_done_callback(_retrieve)
                task.add_done_callback(lambda _t: remote.poke())
                remote.seq, remote.request_id, remote.task = seq, request_id, task
                return task
            if seq <= remote.seq and not remote.takes(seq):
                raise OutOfOrder(
                    f"seq {seq} is taken by another request_id: the next call of this session "
                    f"is {remote.seq + 1}",
                    f"a retry repeats seq {remote.seq} with the same request_id; calls apply "
                    "in order",
                    field="seq",
                )
            if remote.takes(seq) or remote.waiting[seq - 1]:
                deadline = loop.time() + self.order_seconds  # the call before it is in line
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise OutOfOrder(
                    f"seq {seq} is out of order: the next call of this session is "
                    f"{remote.seq + 1}, and no call with seq {seq - 1} arrived within "
                    f"{self.order_seconds:g} s",
                    "number a session's calls 1, 2, 3, ... and send each one once (a retry "
                    "repeats its seq and request_id)",
                    field="seq",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def _still_owned(self, remote: Remote) -> None:
        """Close ``remote`` and answer ``moved`` unless this server still holds the lease its
        root was opened under: its owner now may know nodes this server does not."""
        assert self.engine.leases is not None
        root_id = remote.session.root_id
        if remote.epoch is not None and self.engine.leases.epoch(root_id) == remote.epoch:
            return
        if self._sessions.get(remote.session_id) is remote:
            del self._sessions[remote.session_id]
            await self._close(remote)
        raise Moved(
            f"this server no longer owns root {root_id!r} (its lease expired or was taken over)",
            "reopen the session at the last node answered: the root's owner serves it",
        )

    async def close(self, session_id: str) -> None:
        remote = self._sessions.pop(session_id, None)
        if remote is None:
            raise SessionNotFound(f"no open session {session_id!r}", "it is already closed")
        await self._close(remote)

    async def _close(self, remote: Remote) -> None:
        remote.poke()  # requests waiting for their turn: the session is gone
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
            if not r.busy and not r.waiting and now - r.last_used >= self.idle_seconds
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
        for remote in remotes:
            remote.poke()
        running = [r.task for r in remotes if r.busy and r.task is not None]
        if running:
            _done, late = await asyncio.wait(running, timeout=grace)
            if late:
                log.warning("shutdown: %d calls still running after %.0f s", len(late), grace)
        await asyncio.gather(*(asyncio.to_thread(r.session.close) for r in remotes))
