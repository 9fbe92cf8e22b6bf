"""Shadow verification: re-execute a sample of hits on a fork and compare, in the background."""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tvcache._graph import Node

if TYPE_CHECKING:
    from tvcache._engine import Engine

log = logging.getLogger("tvcache")


class ShadowVerifier:
    """Checks ``fraction`` of hits against a fresh execution in the state they were served in.

    A mismatch withdraws the observation (the next call there re-executes) and is counted in
    ``stats()['shadow_mismatches']``. Runs on one background thread so hits never wait.
    """

    def __init__(self, engine: Engine, fraction: float, seed: int | None = None) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"shadow fraction must be in (0, 1], got {fraction}")
        self._engine = engine
        self._fraction = fraction
        self._rng = random.Random(seed)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tvcache-shadow")

    def maybe_verify(self, anchor: Node, child: Node) -> None:
        if child.nondeterministic or self._rng.random() >= self._fraction:
            return
        self._executor.submit(self._verify, anchor, child)

    def _verify(self, anchor: Node, child: Node) -> None:
        engine = self._engine
        served, call = child.observation, child.call
        if served is None or call is None:
            return
        try:
            sandbox, _base = engine.sandbox_at(anchor)
            try:
                fresh = sandbox.run(call, timeout=engine.settings.call_timeout)
            finally:
                sandbox.close()
        except Exception:
            log.exception("shadow verification of node %s failed to run", child.node_id)
            engine.count(shadow_errors=1)
            return
        engine.count(shadow_runs=1)
        if not fresh.same_as(served):
            log.error("shadow verification: node %s served a wrong observation", child.node_id)
            engine.count(shadow_mismatches=1)
            engine.withdraw(child)

    def drain(self) -> None:
        """Wait until every verification submitted so far has finished."""
        self._executor.submit(lambda: None).result()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
