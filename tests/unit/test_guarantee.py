"""The guarantee, property-based: no observation served as a hit differs from a fresh run.

Any interleaving of rollouts, any snapshot policy, any byte budget (so snapshots get
evicted and misses replay from further up), with a declared-nondeterministic tool and one
whose sandbox flags its observations nondeterministic (background output) in the mix: every
observation the cache returns equals what a fresh environment returns for the same history,
or the result is marked ``tainted`` (its history passes a nondeterministic node).
"""

from __future__ import annotations

from fake_env import FakeBackend, fresh_output
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from sandbox import ToolCall
from tvcache._engine import Engine
from tvcache._policy import AlwaysSnapshot, CostAwarePolicy, LeastRecentlyUsed, NeverSnapshot
from tvcache._session import Session
from tvcache._settings import Settings

CALLS = [
    ToolCall("get", {"k": "a"}),
    ToolCall("get", {"k": "b"}),
    ToolCall("set", {"k": "a", "v": 1}),
    ToolCall("set", {"k": "b", "v": 2}),
    ToolCall("add", {"k": "a", "v": 1}),
    ToolCall("add", {"k": "a", "v": 1, "request_id": "volatile-1"}),
    ToolCall("add", {"k": "b", "v": 3}),
    ToolCall("rand", {"k": "b"}),
    ToolCall("bg", {"k": "a"}),
]
POLICIES = [NeverSnapshot(), AlwaysSnapshot(), CostAwarePolicy(), CostAwarePolicy(0.0, 0.0)]


class Rollouts(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    @initialize(
        policy=st.sampled_from(POLICIES),
        budget=st.sampled_from([0, 150, 400, 10**9]),
        lru=st.booleans(),
        task_count=st.integers(1, 2),
    )
    def start(self, policy: object, budget: int, lru: bool, task_count: int) -> None:
        self.engine = Engine(
            FakeBackend(),
            None,
            settings=Settings(snapshot_budget_bytes=budget),
            policy=policy,  # type: ignore[arg-type]
            eviction=LeastRecentlyUsed() if lru else None,
        )
        self.tasks = [f"task{i}" for i in range(task_count)]
        self.histories: dict[int, list[ToolCall]] = {}
        self.served = 0

    @rule(target=sessions, task=st.integers(0, 1))
    def open_session(self, task: int) -> Session:
        session = self.engine.session(self.tasks[task % len(self.tasks)])
        self.histories[id(session)] = []
        return session

    @rule(session=sessions, call=st.sampled_from(CALLS))
    def call(self, session: Session, call: ToolCall) -> None:
        if id(session) not in self.histories:
            return
        history = self.histories[id(session)]
        history.append(call)
        result = session.call(call.tool, **call.args)
        if result.hit:
            self.served += 1
        if not result.tainted:
            assert result.output == fresh_output(history), (history, result)
        if any(c.tool in ("rand", "bg") for c in history):
            assert result.tainted

    @rule(session=consumes(sessions))
    def close(self, session: Session) -> None:
        session.close()
        self.histories.pop(id(session), None)

    @invariant()
    def budget_and_locks_hold(self) -> None:
        if not hasattr(self, "engine"):
            return
        assert all(node.lock_count == 0 for node in self.engine.graph.nodes())
        locked_or_over = self.engine.stats()["over_budget"]
        assert (
            self.engine.graph.snapshot_bytes() <= self.engine.settings.snapshot_budget_bytes
            or locked_or_over
        )
        fake = self.engine.backend
        assert isinstance(fake, FakeBackend)
        live = {n.snapshot.snapshot_id for n in self.engine.graph.snapshotted() if n.snapshot}
        assert live == set(fake.snapshots)


Rollouts.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestRollouts = Rollouts.TestCase
