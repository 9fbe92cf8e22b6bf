"""``bench sql`` runs its modes interleaved group by group (tvcache.bench.sql.interleave)."""

from __future__ import annotations

import pytest

from tvcache.bench._report import ModeResult
from tvcache.bench.sql import Turns, interleave


class Clock:
    """A clock the fake modes advance, so each turn's length is known exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_mode(
    name: str, clock: Clock, log: list[str], turn_seconds: float, groups: int
) -> tuple[ModeResult, Turns]:
    """A mode whose setup, every group turn and closing advance the clock and log their turn."""
    result = ModeResult(name)

    def turns() -> Turns:
        log.append(f"{name} setup")
        clock.now += 100.0  # setup is not part of the mode's wall
        yield
        for g in range(groups):
            log.append(f"{name} {g}")
            clock.now += turn_seconds
            yield
        log.append(f"{name} close")
        clock.now += 1000.0  # nor is its closing

    return result, turns()


def test_modes_take_turns_group_by_group_and_each_wall_counts_only_its_own_turns() -> None:
    clock, log = Clock(), list[str]()
    modes = [fake_mode(n, clock, log, s, 3) for n, s in (("a", 1.0), ("b", 2.0), ("c", 0.5))]
    interleave(modes, 3, clock=clock)
    assert log == [
        "a setup", "b setup", "c setup",
        "a 0", "b 0", "c 0",
        "a 1", "b 1", "c 1",
        "a 2", "b 2", "c 2",
        "a close", "b close", "c close",
    ]  # fmt: skip
    assert [r.wall_seconds for r, _ in modes] == [3.0, 6.0, 1.5]


def test_a_mode_with_more_turns_than_groups_is_an_error() -> None:
    clock: Clock = Clock()
    modes = [fake_mode("a", clock, [], 1.0, 3)]
    with pytest.raises(RuntimeError, match="a: took more turns than the 2 groups"):
        interleave(modes, 2, clock=clock)
