"""``/metrics``: the engine's counters read at scrape time, plus call latency histograms."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tvcache._engine import Engine

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

_COUNTERS = {
    "calls": "tool calls served",
    "hits": "calls served from the cache (shared single-flight results included)",
    "shared_hits": "calls that waited for a concurrent identical miss",
    "misses": "calls executed in a sandbox",
    "executed_seconds": "seconds spent executing missed calls",
    "replayed_calls": "calls re-executed to bring a sandbox to a node",
    "replayed_seconds": "seconds spent replaying",
    "seconds_saved": "tool seconds the cache saved",
    "starts": "sandboxes started from a root",
    "forks": "sandboxes forked from a snapshot",
    "catch_ups": "bound sandboxes brought forward by replay",
    "pool_takes": "misses that started on a pre-forked sandbox",
    "snapshots": "snapshots taken",
    "evictions": "snapshots evicted by the byte budget",
    "divergences": "replayed calls whose output differed (nondeterminism)",
    "snapshots_refused": "snapshots a backend refused (level fs with running processes)",
    "fork_failures": "forks that failed; their snapshot was dropped",
    "read_only_nodes": "calls proven read-only (stored against the state they ran in)",
    "merged_nodes": "states merged into an equal one by fingerprint",
    "misdeclared_pure": "calls of a tool configured pure that changed the state",
    "fingerprints": "state fingerprints taken",
    "fingerprint_seconds": "seconds spent fingerprinting",
    "shadow_runs": "hits re-executed in the background to verify them",
    "shadow_mismatches": "verified hits that differed: their observation was withdrawn",
    "shadow_errors": "shadow verifications that could not run",
}


def _histogram(name: str, doc: str, samples: Sequence[float]) -> HistogramMetricFamily:
    ordered = sorted(samples)
    buckets, index = [], 0
    for bound in LATENCY_BUCKETS:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        buckets.append((repr(bound), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=sum(ordered))


class EngineCollector(Collector):
    """Reads ``engine.stats()`` on every scrape, so the numbers are never stale."""

    def __init__(self, engine: Engine, gauges: Callable[[], dict[str, float]]) -> None:
        self.engine = engine
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        stats = self.engine.stats().to_dict()

        def number(key: str) -> float:
            value = stats[key]
            assert isinstance(value, int | float)
            return float(value)

        for key, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"tvcache_{key}", doc, value=number(key))
        for key in ("nodes", "snapshot_bytes"):
            yield GaugeMetricFamily(f"tvcache_{key}", key.replace("_", " "), value=number(key))
        store = self.engine.store
        size = store.size_bytes() if store is not None else None
        if size is not None:
            yield GaugeMetricFamily("tvcache_store_bytes", "size of the store", value=float(size))
        for key, value in self.gauges().items():
            yield GaugeMetricFamily(f"tvcache_{key}", key.replace("_", " "), value=value)
        for kind, samples in self.engine.timings().items():
            yield _histogram(f"tvcache_{kind}_seconds", f"duration of a sandbox {kind}", samples)


class Metrics:
    """A registry of its own per app, so that several apps in one process do not collide."""

    def __init__(self, engine: Engine, gauges: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(engine, gauges))
        self.calls = Histogram(
            "tvcache_call_seconds",
            "server-side time to answer a call, by result (hit, miss, error)",
            ["result"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
