"""The controlled clock and the model's record of a held lease, shared by the lease model tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Clock:
    """A clock the test moves by hand: leases expire exactly when the model says."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Held:
    """The model's view of one root's live lease."""

    owner: str
    epoch: int
    expires: float
