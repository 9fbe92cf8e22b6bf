"""A deterministic fake environment for unit tests of the graph and engine (no I/O).

State is a dict of str -> int. Tools: ``get k`` (read), ``set k v``, ``add k v`` (writes),
``rand k`` (declared nondeterministic: writes a random value), ``drift k`` (undeclared
nondeterministic: a fresh value every execution), ``echo k`` (pure: depends on args only),
``sneak k`` (writes, for tests that misdeclare it pure), ``bg k`` (like ``drift``, but the
sandbox flags its observation nondeterministic, as Docker does when a background process may
write into the output). ``get`` proves itself read-only, as
the sqlite tool does; ``fingerprint()`` digests the whole state, a perfect fingerprint.
Every call costs ``seconds`` of fake time so that policies see measured costs without waiting.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox import DoctorCheck, Observation, ReconcileReport, RootSpec, ToolCall, ToolSpec
from snapshots import SnapshotHandle

TOOLS: dict[str, ToolSpec] = {
    "get": ToolSpec("get", required=("k",)),
    "set": ToolSpec("set", required=("k", "v")),
    "add": ToolSpec("add", required=("k", "v"), volatile=frozenset({"request_id"})),
    "rand": ToolSpec("rand", required=("k",), deterministic=False),
    "drift": ToolSpec("drift", required=("k",)),
    "echo": ToolSpec("echo", required=("k",)),
    "sneak": ToolSpec("sneak", required=("k",)),
    "bg": ToolSpec("bg", required=("k",)),
}


def apply(
    state: dict[str, int], call: ToolCall, rng: random.Random, counter: itertools.count[int]
) -> str:
    """Execute ``call`` on ``state``; return its output. The reference semantics."""
    k = str(call.args["k"])
    if call.tool == "get":
        return f"{k}={state.get(k, 0)}"
    if call.tool == "set":
        state[k] = int(call.args["v"])
        return "ok"
    if call.tool == "add":
        state[k] = state.get(k, 0) + int(call.args["v"])
        return f"{k}={state[k]}"
    if call.tool == "rand":
        state[k] = rng.randrange(1_000_000)
        return f"{k}={state[k]}"
    if call.tool in ("drift", "bg"):
        state[k] = next(counter)
        return f"{k}={state[k]}"
    if call.tool == "echo":
        return f"echo {k}"
    if call.tool == "sneak":
        state[k] = state.get(k, 0) + 100
        return f"echo {k}"
    raise AssertionError(call.tool)


def fresh_output(history: list[ToolCall]) -> str:
    """What a fresh environment returns for the last call of ``history``."""
    state: dict[str, int] = {}
    rng, counter = random.Random(), itertools.count(10_000_000)
    out = ""
    for call in history:
        out = apply(state, call, rng, counter)
    return out


@dataclass
class FakeSandbox:
    backend: FakeBackend
    state: dict[str, int]
    sandbox_id: str
    closed: bool = False

    def run(self, call: ToolCall, timeout: float | None = None) -> Observation:
        assert not self.closed, "run on a closed sandbox"
        self.backend.runs.append(call)
        output = apply(self.state, call, self.backend.rng, self.backend.counter)
        return Observation(
            output,
            0,
            self.backend.call_seconds,
            read_only=call.tool == "get",
            nondeterministic=call.tool == "bg",
        )

    def fingerprint(self) -> str:
        return repr(sorted(self.state.items()))

    def snapshot(self, snapshot_id: str) -> SnapshotHandle:
        assert not self.closed
        self.backend.snapshots[snapshot_id] = dict(self.state)
        size = 100 + 10 * len(self.state)
        return SnapshotHandle(snapshot_id, "fake", "fs", f"mem:{snapshot_id}", size)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.backend.closed += 1


@dataclass
class FakeBackend:
    """Counts every start, fork and run so tests can assert that a hit touched nothing."""

    call_seconds: float = 1.0
    seed: int = 0
    runs: list[ToolCall] = field(default_factory=list)
    snapshots: dict[str, dict[str, int]] = field(default_factory=dict)
    starts: int = 0
    forks: int = 0
    closed: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.counter = itertools.count(1)

    @property
    def name(self) -> str:
        return "local"

    def tool_specs(self) -> Mapping[str, ToolSpec]:
        return TOOLS

    def root_identity(self, spec: RootSpec) -> str:
        return "fake-template"

    def start(self, spec: RootSpec) -> FakeSandbox:
        self.starts += 1
        return FakeSandbox(self, {}, f"sb{next(self._ids)}")

    def fork(self, handle: SnapshotHandle) -> FakeSandbox:
        self.forks += 1
        return FakeSandbox(self, dict(self.snapshots[handle.snapshot_id]), f"sb{next(self._ids)}")

    def delete_snapshot(self, handle: SnapshotHandle) -> None:
        self.snapshots.pop(handle.snapshot_id, None)

    def reconcile(self, known: Mapping[str, SnapshotHandle]) -> ReconcileReport:
        report = ReconcileReport()
        for sid in list(self.snapshots):
            if sid not in known:
                del self.snapshots[sid]
                report.orphans_removed.append(sid)
        report.missing = [sid for sid in known if sid not in self.snapshots]
        return report

    def doctor(self) -> list[DoctorCheck]:
        return [DoctorCheck("fake", True, "in memory")]
