"""A session is one rollout: a position in the graph and, when it needs one, a bound sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from sandbox import JSON, Observation, ToolCall
from snapshots import TvcacheError
from tvcache._cursor import Cursor, Served
from tvcache._graph import Node
from tvcache._turns import Turns

if TYPE_CHECKING:
    from tvcache._engine import Engine


class SessionClosedError(TvcacheError):
    """A call on a session that was closed."""


@dataclass(frozen=True, slots=True)
class CallResult:
    """An observation and how it was served.

    ``tainted`` is True when the history passes a nondeterministic node: a fresh run of the
    same history may legitimately return something else.
    """

    observation: Observation
    hit: bool
    node_id: str
    seconds_saved: float
    tainted: bool

    @property
    def output(self) -> str:
        return self.observation.output

    @property
    def exit_code(self) -> int:
        return self.observation.exit_code


class Session:
    """One trajectory in progress, a thin handle on its cursor; close when done.

    Calls issued concurrently (from threads, or ``asyncio.gather`` on ``acall``) execute one
    at a time in the order they were issued: each call's history is the calls issued before
    it, as if they had been issued one after another.
    """

    def __init__(self, engine: Engine, root_id: str) -> None:
        self.engine = engine
        self.root_id = root_id
        root = engine.graph.root(root_id)
        assert root is not None
        self._cursor = Cursor(root)
        self._history: list[ToolCall] = []
        self._closed = False
        self._turns = Turns()

    @property
    def position(self) -> Node:
        return self._cursor.position

    @property
    def node_id(self) -> str:
        return self._cursor.position.node_id

    @property
    def history(self) -> list[ToolCall]:
        """The calls this session made, in order (read-only ones included)."""
        return list(self._history)

    def call(self, tool: str, /, **args: JSON) -> CallResult:
        """Serve one tool call: from the cache when the history (or, where opted in, the
        verified state) matches, else run it. Waits for the calls issued before it."""
        ticket = self._turns.enter()
        try:
            return self._call(tool, args)
        finally:
            self._turns.release(ticket)

    def _call(self, tool: str, args: dict[str, JSON]) -> CallResult:
        """:meth:`call` during its turn."""
        self._check_open()
        return self._result(tool, args, self.engine.serve(self._cursor, tool, args))

    async def acall(self, tool: str, /, **args: JSON) -> CallResult:
        """The async twin of ``call``: hits are served inline, misses in a worker thread.
        Its place in the order is taken when the coroutine starts running."""
        ticket = self._turns.take()
        if self._turns.ready(ticket) and not self._closed:  # nothing before it: try a hit
            try:
                served = self.engine.serve_hit(self._cursor, tool, args)
            except BaseException:
                self._turns.release(ticket)
                raise
            if served is not None:
                try:
                    return self._result(tool, args, served)
                finally:
                    self._turns.release(ticket)
        return await self._turns.in_thread(ticket, lambda: self._call(tool, args))

    def _result(self, tool: str, args: dict[str, JSON], served: Served) -> CallResult:
        self._history.append(ToolCall(tool, dict(args)))
        observation = served.observation
        saved = observation.seconds if served.hit else 0.0
        return CallResult(observation, served.hit, served.node.node_id, saved, served.tainted)

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError(
                "this session is closed", "open a new one with engine.session()"
            )

    def resume(self, node: Node) -> None:
        """Continue from ``node`` (a node of this root), e.g. a remote worker's session after a
        server restart. The history before it is the node's path; the sandbox is dropped."""
        if node.root_id != self.root_id:
            raise TvcacheError(
                f"node {node.node_id} belongs to another root", "resume at a node of this root"
            )
        self._cursor.move_to(node)
        self._history = [n.call for n in self.position.path() if n.call is not None]

    def close(self) -> None:
        """End the rollout and destroy its sandbox. Idempotent."""
        self._closed = True
        self._cursor.drop_sandbox()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
