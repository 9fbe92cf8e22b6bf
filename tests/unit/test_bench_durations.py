"""``bench terminal``'s judge: outputs that differ only in durations are not wrong observations."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import Observation
from tvcache.bench._durations import Difference, compare, duration_spans, without_durations

PYTEST = (
    "...................                                                      [100%]\n"
    "19 passed in {t}\n"
)
TIME = "built\n\nreal\t0m{t}\nuser\t0m0.{u}s\nsys\t0m0.002s\n"


def _obs(output: str, exit_code: int = 0) -> Observation:
    return Observation(output, exit_code=exit_code)


@pytest.mark.parametrize(
    ("served", "fresh"),
    [
        (PYTEST.format(t="0.05s"), PYTEST.format(t="0.04s")),
        (PYTEST.format(t="59.90s (0:00:59)"), PYTEST.format(t="61.02s (0:01:01)")),
        (PYTEST.format(t="1.20s"), PYTEST.format(t="61.02s (0:01:01)")),
        ("Ran 3 tests in 0.001s\n\nOK\n", "Ran 3 tests in 0.012s\n\nOK\n"),
        (TIME.format(t="0.003s", u=1), TIME.format(t="1.250s", u=7)),
        ("real 0.00\nuser 0.00\nsys 0.01\n", "real 0.31\nuser 0.02\nsys 0.00\n"),
        ("build took 12ms\n", "build took 1.5 s\n"),
        ("0.02s call     tests/test_a.py::test_x\n", "0.11s call     tests/test_a.py::test_x\n"),
    ],
)
def test_a_difference_in_durations_only_is_its_own_category(served: str, fresh: str) -> None:
    assert compare(_obs(served), _obs(fresh)) is Difference.DURATIONS_ONLY


@pytest.mark.parametrize(
    ("served", "fresh"),
    [
        # a real difference next to a duration: one test fewer passed
        (PYTEST.format(t="0.05s"), PYTEST.format(t="0.04s").replace("19 passed", "18 passed")),
        (PYTEST.format(t="0.05s"), PYTEST.format(t="0.05s").replace("19 passed", "18 passed")),
        ("1 failed, 18 passed in 0.05s\n", "19 passed in 0.04s\n"),
        # pytest --durations listing other tests (their order is a real difference)
        ("0.02s call     tests/test_a.py::test_x\n", "0.02s call     tests/test_a.py::test_y\n"),
        # not durations: numbers without the words around them, or without a decimal point
        ("retry in 5s\n", "retry in 6s\n"),
        ("19 passed within 0.05s\n", "19 passed within 0.04s\n"),
        ("total 0.05s\n", "total 0.04s\n"),
        ("real\t0m0.003s and more\n", "real\t0m0.004s and more\n"),
        ("it took 12 apples\n", "it took 13 apples\n"),
    ],
)
def test_a_difference_outside_the_durations_is_different(served: str, fresh: str) -> None:
    assert compare(_obs(served), _obs(fresh)) is Difference.DIFFERENT


def test_identical_outputs_are_the_same_and_exit_codes_count() -> None:
    same = PYTEST.format(t="0.05s")
    assert compare(_obs(same), _obs(same)) is Difference.SAME
    assert compare(_obs(same, 1), _obs(same, 0)) is Difference.DIFFERENT
    other_time = PYTEST.format(t="0.04s")
    assert compare(_obs(same, 1), _obs(other_time, 0)) is Difference.DIFFERENT


def test_masking_keeps_the_text_between_durations_not_a_placeholder() -> None:
    # segments, so that no literal text (whatever a placeholder would be) passes for a duration
    assert without_durations("19 passed in 0.05s\nbuild took 12ms\n") == (
        "19 passed in ",
        "\nbuild took ",
        "\n",
    )
    assert without_durations("no duration here") == ("no duration here",)


DURATIONS = [
    "in {}s",
    "in {}s (0:01:05)",
    "took {}ms",
    "took {} s",
    "\nreal\t0m{}s\n",
    "\n{}s call ",
]
FILLERS = [
    "19 passed",
    " ",
    "x",
    "\n",
    "s",
    "in ",
    "took ",
    "real\t",
    "0.5",
    "(0:00:01)",
    "<d>",
    "ms",
]
NUMBERS = st.sampled_from(["0.05", "0.04", "1.50", "61.02", "12", "3"])


@st.composite
def pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two texts of durations between fillers: the second with new duration values and,
    rarely, another filler (fillers are fragments of durations, to make near misses)."""
    first: list[str] = []
    second: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            template = draw(st.sampled_from(DURATIONS))
            first.append(template.format(draw(NUMBERS)))
            second.append(template.format(draw(NUMBERS)))
        else:
            filler = draw(st.sampled_from(FILLERS))
            first.append(filler)
            swap = draw(st.integers(0, 5)) == 0
            second.append(draw(st.sampled_from(FILLERS)) if swap else filler)
    return "".join(first), "".join(second)


@settings(max_examples=300)
@given(pairs())
def test_masking_never_hides_a_difference_outside_the_duration_values(
    pair: tuple[str, str],
) -> None:
    served, fresh = pair
    if compare(_obs(served), _obs(fresh)) is not Difference.DURATIONS_ONLY:
        return
    # putting fresh's duration values into served's duration slots gives fresh exactly
    values = [fresh[start:end] for start, end in duration_spans(fresh)]
    rebuilt, at = [], 0
    for (start, end), value in zip(duration_spans(served), values, strict=True):
        rebuilt += [served[at:start], value]
        at = end
    assert "".join([*rebuilt, served[at:]]) == fresh
    # and what was masked is a duration: digits, separators and units, nothing else
    for start, end in duration_spans(served):
        rest = re.sub(r"seconds|secs|sec|ms|us|µs|ns|min|minutes|m|s", "", served[start:end])
        assert re.fullmatch(r"[\d.: ()]+", rest), served[start:end]
