"""``tvcache replay``: re-execute recorded trajectories in fresh sandboxes and compare.

A trajectory file has one JSON object per line::

    {"root": {"task_id": ..., "backend": "local", "template": ..., "options": {...}},
     "calls": [{"tool": "bash", "args": {"command": "ls"}}, ...],
     "observations": ["output", {"output": ..., "exit_code": 0}, ...]}   # optional

Each trajectory runs in a sandbox started fresh from its root (no cache, no fork). Every
call's output is compared with the recorded observation (a string compares the output; an
object compares the fields it has), or, without recorded observations, with what the cache
holds for that history. A divergence at a node the cache knows is nondeterministic is
reported but does not fail the run: a fresh run may legitimately differ there. A trajectory
with nothing to compare (no recorded observations, none of its calls in the cache) fails the
run: a check that cannot fail is no check.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import JSON, Observation, RootSpec, ToolCall
from snapshots import TvcacheError
from tvcache._engine import Engine
from tvcache._keys import root_id
from tvcache._restore import walk

_FIELDS = ("output", "exit_code", "truncated", "timed_out")


@dataclass(frozen=True, slots=True)
class Trajectory:
    spec: RootSpec
    calls: list[ToolCall]
    observations: list[dict[str, JSON]] | None


@dataclass(slots=True)
class Divergence:
    trajectory: int
    call: int
    tool_call: dict[str, JSON]
    against: str  # "recorded" or "cached"
    expected: dict[str, JSON]
    actual: dict[str, JSON]
    diff: str
    nondeterministic: bool


@dataclass(slots=True)
class Report:
    trajectories: int = 0
    calls: int = 0
    compared: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    uncompared: list[int] = field(default_factory=list)  # trajectories with nothing to compare

    @property
    def failed(self) -> bool:
        return bool(self.uncompared) or any(not d.nondeterministic for d in self.divergences)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": self.failed}


def _bad(line: int, what: str) -> TvcacheError:
    return TvcacheError(
        f"trajectory file line {line}: {what}",
        'each line is {"root": {"task_id": ...}, "calls": [{"tool": ..., "args": {...}}], '
        '"observations": [...] (optional)}',
    )


def _expected(line: int, value: object) -> dict[str, JSON]:
    if isinstance(value, str):
        return {"output": value}
    if isinstance(value, Mapping) and value.keys() <= set(_FIELDS) and value:
        return dict(value)
    raise _bad(line, f"an observation must be a string or an object with {', '.join(_FIELDS)}")


def load(path: Path) -> list[Trajectory]:
    """Parse and check every line before anything runs."""
    trajectories = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
            root, calls = data["root"], data["calls"]
            spec = RootSpec(
                task_id=str(root["task_id"]),
                backend=str(root.get("backend", "local")),
                template=root.get("template"),
                options=dict(root.get("options") or {}),
            )
            tool_calls = [ToolCall(str(c["tool"]), dict(c.get("args") or {})) for c in calls]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise _bad(number, f"not a trajectory ({error!r})") from error
        recorded = data.get("observations")
        if recorded is not None and (not isinstance(recorded, list) or len(recorded) != len(calls)):
            raise _bad(number, "'observations' must be a list with one entry per call")
        observations = None if recorded is None else [_expected(number, o) for o in recorded]
        trajectories.append(Trajectory(spec, tool_calls, observations))
    return trajectories


def _cached(
    engine: Engine, spec: RootSpec, calls: list[ToolCall]
) -> list[tuple[Observation, bool]]:
    """Cached observations (and taint) along ``calls``; the store is not written for a root
    it does not know."""
    rid = root_id(spec, engine.backend.root_identity(spec))
    if engine.store is None or engine.store.get_root(rid) is None:
        return []
    engine.open_root(spec)
    answered = walk(engine, rid, calls)
    return [(node.observation, node.tainted()) for node in answered if node.observation is not None]


def _diff(expected: dict[str, JSON], actual: dict[str, JSON], against: str) -> str:
    lines = difflib.unified_diff(
        str(expected.get("output", "")).splitlines(keepends=True),
        str(actual["output"]).splitlines(keepends=True),
        against,
        "fresh",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    for key in expected:
        if key != "output" and expected[key] != actual[key]:
            text += f"{key}: {expected[key]!r} ({against}) != {actual[key]!r} (fresh)\n"
    return text


def _expectations(
    engine: Engine, trajectory: Trajectory
) -> tuple[str, list[dict[str, JSON]], list[bool]]:
    """What each call should return (recorded, else cached) and whether it is tainted."""
    cached = _cached(engine, trajectory.spec, trajectory.calls)
    tainted = [taint for _obs, taint in cached]
    if trajectory.observations is not None:
        return "recorded", trajectory.observations, tainted
    return "cached", [{k: obs.to_dict()[k] for k in _FIELDS} for obs, _ in cached], tainted


def replay(trajectories: list[Trajectory], engine_for: Callable[[str], Engine]) -> Report:
    """Run every trajectory in a fresh sandbox; collect every divergence."""
    report = Report(trajectories=len(trajectories))
    for t, trajectory in enumerate(trajectories):
        engine = engine_for(trajectory.spec.backend)
        against, expectations, tainted = _expectations(engine, trajectory)
        if not expectations[: len(trajectory.calls)]:
            report.uncompared.append(t)
            continue  # running it could not fail
        sandbox = engine.backend.start(trajectory.spec)
        try:
            for c, call in enumerate(trajectory.calls):
                fresh = sandbox.run(call, timeout=engine.settings.call_timeout).to_dict()
                report.calls += 1
                if c >= len(expectations):
                    continue  # beyond what the cache holds: nothing to compare with
                report.compared += 1
                expected = expectations[c]
                if all(expected[k] == fresh[k] for k in expected):
                    continue
                actual = {k: fresh[k] for k in _FIELDS}
                report.divergences.append(
                    Divergence(
                        trajectory=t,
                        call=c,
                        tool_call={"tool": call.tool, "args": dict(call.args)},
                        against=against,
                        expected=expected,
                        actual=actual,
                        diff=_diff(expected, actual, against),
                        nondeterministic=c < len(tainted) and tainted[c],
                    )
                )
        finally:
            sandbox.close()
    return report
