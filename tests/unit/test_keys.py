"""The key of a call computed with one encoding of its args is the key, and the error, that
validating and then keying gives: for every args value, good or bad."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import ToolCallError, ToolSpec
from tvcache._keys import call_key, checked_call_key

SPECS = [
    ToolSpec(name="sqlite", version="2", volatile=frozenset({"timeout"}), required=("sql",)),
    ToolSpec(name="bash", required=("command",)),
    ToolSpec(name="free"),
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0xDFFF), max_size=6),
    st.sampled_from([object(), b"bytes", {1, 2}]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), inner, max_size=3),
    ),
    max_leaves=8,
)
NAMES = st.sampled_from(["sql", "command", "timeout", "db", "k"])
ARGS = st.one_of(
    st.dictionaries(NAMES, VALUES, max_size=4),
    st.dictionaries(st.one_of(NAMES, st.integers(0, 2)), VALUES, max_size=3),
    st.lists(VALUES, max_size=2),
)


def outcome(compute: object) -> tuple[str, str]:
    try:
        return "key", compute()  # type: ignore[operator]
    except ToolCallError as error:
        return "ToolCallError", f"{error.message} | {error.hint}"
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)


@settings(max_examples=150, deadline=None)
@given(spec=st.sampled_from(SPECS), args=ARGS)
def test_one_encoding_gives_the_key_or_the_error_of_validate_then_key(
    spec: ToolSpec, args: object
) -> None:
    expected = outcome(lambda: call_key(spec, spec.validate(args)))
    assert outcome(lambda: checked_call_key(spec, args)) == expected


def test_bad_args_get_validates_clear_error() -> None:
    spec = SPECS[0]
    for bad in ({"sql": math.nan}, {"sql": "\udc80"}, {"sql": object()}, {"db": "x"}):
        kind, message = outcome(lambda bad=bad: checked_call_key(spec, bad))
        assert kind == "ToolCallError" and "sqlite" in message, (bad, message)
