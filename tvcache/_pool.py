"""The interface between the engine and a pool of pre-forked sandboxes.

The engine asks the pool before it forks: a pooled sandbox at the miss's position, or at an
ancestor close enough that replaying from it is cheaper than the alternatives, starts the
miss without waiting for a fork.
"""

from __future__ import annotations

from typing import Protocol

from sandbox import Sandbox
from tvcache._graph import Node


class SandboxPool(Protocol):
    def take(self, target: Node, *, max_replay_seconds: float) -> tuple[Sandbox, Node] | None:
        """Hand over (and forget) a sandbox at ``target`` or at an ancestor of it from which
        replaying to ``target`` is faithful and costs at most ``max_replay_seconds``."""
        ...

    def note_miss(self, node: Node) -> None:
        """A miss needed a sandbox at ``node``: the pool learns which nodes are hot."""
        ...

    def note_session(self, root: Node) -> None:
        """A session opened on ``root``: its first sandbox can be prepared while it hits."""
        ...

    def close(self) -> None:
        """Stop filling and destroy every pooled sandbox."""
        ...
