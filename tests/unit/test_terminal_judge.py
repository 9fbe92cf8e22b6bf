"""How ``bench terminal`` sorts a hit that differs from the no-cache run (no Docker: a hit that
needs fresh re-runs becomes a suspect, which these tests look at before any re-run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tqdm import tqdm

from sandbox import Observation
from tvcache.bench.terminal import Plan, _Recorder, judge

PASSED = "...................  [100%]\n19 passed in {}\n"
HISTORY = ("cd /work/inventory && python3 -m pytest -q",)


def _recorders(*no_cache: str) -> tuple[_Recorder, _Recorder]:
    """The no-cache run (rollout i printed ``no_cache[i]``) and a cached mode's recorder."""
    bar = tqdm(disable=True)
    truth = _Recorder("no cache", None, bar)
    for i, output in enumerate(no_cache):
        truth.call((0, i, 0), HISTORY, Observation(output), 0.1, hit=False)
    return truth, _Recorder("tvcache fs", truth, bar)


def test_a_hit_that_differs_in_test_durations_only_is_counted_apart_not_judged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the no-cache run and (as the last session's judge found) its re-runs printed 0.04s
    _, cached = _recorders(PASSED.format("0.04s"), PASSED.format("0.04s"))
    cached.call((0, 1, 0), HISTORY, Observation(PASSED.format("0.05s")), 0.0, hit=True)
    assert len(cached.duration_only) == 1
    assert cached.suspects == []
    judge(Plan([], []), Path("no-judge-home"), cached)  # no suspect: nothing to re-run
    assert cached.result.wrong == 0
    err = capsys.readouterr().err
    assert "differs in durations only at (0, 1, 0)" in err
    assert "0.05s" in err and "0.04s" in err


def test_a_real_difference_next_to_a_duration_stays_a_suspect() -> None:
    _, cached = _recorders(PASSED.format("0.04s"))
    served = PASSED.format("0.04s").replace("19 passed", "18 passed")
    cached.call((0, 0, 0), HISTORY, Observation(served), 0.0, hit=True)
    assert cached.duration_only == []
    assert [key for key, _, _ in cached.suspects] == [(0, 0, 0)]


def test_fresh_runs_differing_in_durations_do_not_excuse_a_real_difference() -> None:
    # two no-cache runs of the history disagree, but only in their durations: the history
    # still has one right answer, and a hit with another test count is a suspect
    _, cached = _recorders(PASSED.format("0.04s"), PASSED.format("0.06s"))
    served = PASSED.format("0.04s").replace("19 passed", "1 failed, 18 passed")
    cached.call((0, 1, 0), HISTORY, Observation(served), 0.0, hit=True)
    assert cached.nondeterministic_differences == 0
    assert len(cached.suspects) == 1


def test_an_identical_hit_is_neither() -> None:
    _, cached = _recorders(PASSED.format("0.04s"))
    cached.call((0, 0, 0), HISTORY, Observation(PASSED.format("0.04s")), 0.0, hit=True)
    assert (cached.duration_only, cached.suspects, cached.nondeterministic_differences) == (
        [],
        [],
        0,
    )


def test_the_quick_help_says_what_quick_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from tvcache.bench.terminal import QUICK_GROUP, QUICK_MODES, QUICK_TASKS
    from tvcache.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{len(QUICK_TASKS)} tasks x {QUICK_GROUP} rollouts" in text
    assert all(mode.removeprefix("tvcache ") in text for mode in QUICK_MODES.split(","))
