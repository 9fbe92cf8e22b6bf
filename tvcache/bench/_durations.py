"""Durations in tool output: the text that differs between two runs of the same state.

``bench terminal`` judges a served hit by comparing it with fresh runs of its history. A test
runner's "19 passed in 0.05s" differs from run to run while the state is the same, so a hit
that differs from every fresh run *only* in such durations is counted apart ("differs in
durations only"), not as a wrong observation. The set of duration patterns is small and
anchored on the words around the number, so that masking stays conservative: a difference
anywhere outside the masked values still makes two outputs different.

The patterns (only the value is masked, the words around it must be equal):

- ``in 0.05s`` and ``in 65.12s (0:01:05)``: pytest's, unittest's ("Ran 3 tests in 0.001s") and
  cargo's summaries. The number must have a decimal point: "retry in 5s" is not masked.
- ``0.01s call  tests/x.py::t``: a line of pytest's ``--durations`` (setup, call, teardown).
- ``real\\t0m0.003s`` / ``user ...`` / ``sys ...``: bash's ``time`` (and ``time -p``'s
  ``real 0.00``), each on its own line.
- ``took 12ms``, ``took 1.5 s``, ``took 3 seconds``: log lines of the "took" kind.
"""

from __future__ import annotations

import re
from enum import Enum

from sandbox import Observation

DURATION_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\bin (\d+\.\d+s(?: \(\d+:\d\d:\d\d\))?)(?!\w)"),
    re.compile(r"^(\d+\.\d+s) (?=(?:setup|call|teardown) )", re.MULTILINE),
    re.compile(r"^(?:real|user|sys)[ \t]+(\d+m\d+\.\d+s|\d+\.\d+)$", re.MULTILINE),
    re.compile(
        r"\btook (\d+(?:\.\d+)? ?(?:ns|us|µs|ms|seconds|second|secs|sec|s|minutes|min|m))(?!\w)"
    ),
)
"""Each pattern's group 1 is the duration value that is masked."""


class Difference(Enum):
    """How a served observation compares with a fresh run of the same history."""

    SAME = "same"
    DURATIONS_ONLY = "durations only"
    DIFFERENT = "different"


def duration_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every duration value in ``text``, sorted, never overlapping."""
    found = sorted(m.span(1) for pattern in DURATION_PATTERNS for m in pattern.finditer(text))
    spans: list[tuple[int, int]] = []
    for start, end in found:
        if not spans or start >= spans[-1][1]:
            spans.append((start, end))
    return spans


def without_durations(text: str) -> tuple[str, ...]:
    """The text between the duration values: equal for two outputs that differ only in them.

    A tuple of segments, not a text with placeholders, so that no literal text can pass for a
    masked duration."""
    segments, at = [], 0
    for start, end in duration_spans(text):
        segments.append(text[at:start])
        at = end
    segments.append(text[at:])
    return tuple(segments)


def compare(served: Observation, fresh: Observation) -> Difference:
    """SAME, DURATIONS_ONLY (equal but for the duration values), or DIFFERENT."""
    if served.same_as(fresh):
        return Difference.SAME
    other = (served.exit_code, served.truncated, served.timed_out) != (
        fresh.exit_code,
        fresh.truncated,
        fresh.timed_out,
    )
    if other or without_durations(served.output) != without_durations(fresh.output):
        return Difference.DIFFERENT
    return Difference.DURATIONS_ONLY


JudgedKey = tuple[tuple[str, ...], int, bool, bool]


def judged_key(obs: Observation) -> JudgedKey:
    """What two fresh runs must share to count as agreeing: everything but durations."""
    return without_durations(obs.output), obs.exit_code, obs.truncated, obs.timed_out
