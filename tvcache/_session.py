"""A session is one rollout: a position in the graph and, when it needs one, a bound sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from sandbox import JSON, Observation, Sandbox, ToolCall, ToolSpec
from snapshots import TvcacheError
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
    """One trajectory in progress; close when done.

    Calls issued concurrently (from threads, or ``asyncio.gather`` on ``acall``) execute one
    at a time in the order they were issued: each call's history is the calls issued before
    it, as if they had been issued one after another.
    """

    def __init__(self, engine: Engine, root_id: str) -> None:
        self.engine = engine
        self.root_id = root_id
        root = engine.graph.root(root_id)
        assert root is not None
        self.position: Node = root
        self._sandbox: Sandbox | None = None
        self._sandbox_node: Node | None = None
        self._history: list[ToolCall] = []
        self._tainted = False
        self._closed = False
        self._turns = Turns()

    @property
    def node_id(self) -> str:
        return self.position.node_id

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
        if self._closed:
            raise SessionClosedError(
                "this session is closed", "open a new one with engine.session()"
            )
        spec, key = self.engine.key_of(tool, args)
        call = ToolCall(tool, dict(args))
        anchor = self.engine.anchor(self.position, spec, key)
        child = self.engine.lookup(anchor, key)
        if child is not None:
            return self._advance(call, child, hit=True)
        for _attempt in range(3):
            child, flight, leader = self.engine.join_or_lead(anchor, key)
            if child is not None:
                return self._advance(call, child, hit=True)
            if not leader:
                try:
                    child = flight.result()
                except TvcacheError:
                    continue  # the leader failed; try to lead ourselves
                if child.parent is not anchor:
                    continue  # the leader stored it elsewhere (a pure tool that wrote)
                self.engine.count_shared(child)
                return self._advance(call, child, hit=True)
            try:
                child = self._miss(anchor, key, call, spec)
                flight.set_result(child)
            except BaseException as error:
                flight.set_exception(error)
                raise
            finally:
                self.engine.finish_flight(anchor, key)
            return self._advance(call, child, hit=False)
        raise TvcacheError(f"call {tool!r} failed in three other sessions", "see the log for why")

    async def acall(self, tool: str, /, **args: JSON) -> CallResult:
        """The async twin of ``call``: hits are served inline, misses in a worker thread.
        Its place in the order is taken when the coroutine starts running."""
        ticket = self._turns.take()
        if self._turns.ready(ticket) and not self._closed:  # nothing before it: try a hit
            try:
                spec, key = self.engine.key_of(tool, args)
                child = self.engine.lookup(self.engine.anchor(self.position, spec, key), key)
            except BaseException:
                self._turns.release(ticket)
                raise
            if child is not None:
                try:
                    return self._advance(ToolCall(tool, dict(args)), child, hit=True)
                finally:
                    self._turns.release(ticket)
        return await self._turns.in_thread(ticket, lambda: self._call(tool, args))

    def _advance(self, call: ToolCall, child: Node, *, hit: bool) -> CallResult:
        """Move to the state ``child`` leaves the environment in; a read-only call stays."""
        observation = child.observation
        assert observation is not None
        self._history.append(call)
        self._tainted = self._tainted or child.tainted()
        if not child.read_only:
            self.position = child.state()
        saved = observation.seconds if hit else 0.0
        return CallResult(observation, hit, child.node_id, saved, self._tainted)

    def _miss(self, anchor: Node, key: str, call: ToolCall, spec: ToolSpec) -> Node:
        sandbox, at = self.engine.place(self._sandbox, self._sandbox_node, self.position)
        self._sandbox, self._sandbox_node = sandbox, at
        try:
            child = self.engine.execute(sandbox, at, anchor, key, call, spec)
        except BaseException:
            self._drop_sandbox()
            raise
        if not child.read_only:
            self._sandbox_node = child.state()
        return child

    def resume(self, node: Node) -> None:
        """Continue from ``node`` (a node of this root), e.g. a remote worker's session after a
        server restart. The history before it is the node's path; the sandbox is dropped."""
        if node.root_id != self.root_id:
            raise TvcacheError(
                f"node {node.node_id} belongs to another root", "resume at a node of this root"
            )
        self._drop_sandbox()
        self.position = node.state()
        self._history = [n.call for n in self.position.path() if n.call is not None]
        self._tainted = node.tainted()

    def _drop_sandbox(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
        self._sandbox, self._sandbox_node = None, None

    def close(self) -> None:
        """End the rollout and destroy its sandbox. Idempotent."""
        self._closed = True
        self._drop_sandbox()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
