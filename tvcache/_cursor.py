"""A rollout's place in the graph (``Cursor``) and how one call was served (``Served``).

The engine serves every call on a cursor and moves it; a session is a handle on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import Observation, Sandbox
from tvcache._graph import Node


@dataclass(frozen=True, slots=True)
class Served:
    """How one call was served: the node holding its observation, and whether from cache.

    ``tainted``: the history passes a nondeterministic node, so a fresh run of the same
    history may legitimately return something else.
    """

    node: Node
    hit: bool
    tainted: bool

    @property
    def observation(self) -> Observation:
        assert self.node.observation is not None
        return self.node.observation


@dataclass(slots=True)
class Cursor:
    """Where one rollout is: its position, and the sandbox bound to it (at ``sandbox_node``,
    on the path to the position). The engine moves it; one session owns it."""

    position: Node
    sandbox: Sandbox | None = None
    sandbox_node: Node | None = None
    tainted: bool = False

    def advance(self, child: Node, *, hit: bool) -> Served:
        """Move to the state ``child`` leaves the environment in; a read-only call stays."""
        self.tainted = self.tainted or child.tainted()
        if not child.read_only:
            self.position = child.state()
        return Served(child, hit, self.tainted)

    def move_to(self, node: Node) -> None:
        """Continue from ``node``; the bound sandbox is dropped."""
        self.drop_sandbox()
        self.position = node.state()
        self.tainted = node.tainted()

    def drop_sandbox(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
        self.sandbox, self.sandbox_node = None, None
