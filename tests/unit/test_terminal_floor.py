"""The distinct-call floor of ``bench terminal``: each distinct history's call once."""

from __future__ import annotations

import pytest
from tqdm import tqdm

from sandbox import Observation
from tvcache.bench._terminal_workload import TerminalGroup, TerminalTask
from tvcache.bench.terminal import Plan, _Recorder, distinct_floor


def test_floor_counts_each_distinct_history_once_at_its_mean_time() -> None:
    task = TerminalTask("t", "img", "do it", "check")
    rollouts = (("a", "b"), ("a", "b"), ("a", "c"), ("d",))
    plan = Plan([TerminalGroup(task, rollouts)], [])
    with tqdm(disable=True) as bar:
        rec = _Recorder("no cache", None, bar)
        seconds = {"a": [1.0, 3.0, 2.0], "b": [4.0, 6.0], "c": [10.0], "d": [7.0]}
        for i, rollout in enumerate(rollouts):
            for step, command in enumerate(rollout):
                obs = Observation("out", seconds=seconds[command].pop(0))
                rec.call((0, i, step), rollout[: step + 1], obs, 0.0, hit=False)
            rec.score(0, i, Observation("1.0", seconds=0.5 + i))
    floor, distinct = distinct_floor(plan, rec)
    # a (mean 2) + a,b (mean 5) + a,c (10) + d (7); checkers: a,b (mean of 0.5, 1.5) + a,c + d
    assert distinct == 7
    assert floor == pytest.approx(2 + 5 + 10 + 7 + 1.0 + 2.5 + 3.5)
