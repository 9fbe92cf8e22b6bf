"""One view of a cluster's servers (issue 14): ``/v1/stats`` and ``/metrics`` of every live
server summed, saying which servers answered. A server's own endpoints are unchanged; this
is what ``tvcache stats --cluster`` prints and ``/metrics/cluster`` serves (any server can
be scraped for the whole cluster)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from snapshots import TvcacheError
from tvcache._ownership import Ownership
from tvcache._store import Store
from tvcache.client import Client

__all__ = ["ClusterView", "gather", "live_urls", "sum_metrics", "sum_stats"]


def live_urls(store: Store) -> list[str]:
    """The addresses on the store's live list (``tvcache serve --advertise``)."""
    return [entry.address for entry in Ownership(store).live_servers()]


@dataclass
class ClusterView:
    """What each live server answered (``stats``, ``metrics``) and which did not (``failed``)."""

    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "servers_answered": sorted(self.stats),
            "servers_failed": self.failed,
            "total": sum_stats(list(self.stats.values())),
            "by_server": self.stats,
        }


def _ask(url: str, token: str | None, timeout: float, metrics: bool) -> tuple[dict[str, Any], str]:
    with Client(url, token=token, timeout=timeout, retries=0) as client:
        return client.stats(), client.metrics() if metrics else ""


def gather(
    urls: Sequence[str], token: str | None, *, timeout: float = 5.0, metrics: bool = True
) -> ClusterView:
    """Ask every server at once; one that does not answer in ``timeout`` s is ``failed``."""
    view = ClusterView()
    if not urls:
        return view
    with ThreadPoolExecutor(min(16, len(urls))) as pool:
        futures = {url: pool.submit(_ask, url, token, timeout, metrics) for url in urls}
        for url, future in futures.items():
            try:
                view.stats[url], text = future.result()
            except TvcacheError as error:
                view.failed[url] = error.message
            else:
                if metrics:
                    view.metrics[url] = text
    return view


def sum_stats(answers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Numbers summed key by key (nested mappings too); rates are recomputed, not summed."""
    total: dict[str, Any] = {}
    for answer in answers:
        for key, value in answer.items():
            if isinstance(value, bool) or value is None or isinstance(value, str):
                continue
            if isinstance(value, Mapping):
                total[key] = sum_stats([total.get(key) or {}, value])
            elif isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    for key in [k for k in total if "rate" in k]:  # a sum of rates means nothing
        del total[key]
    if total.get("calls"):
        total["hit_rate"] = round(total.get("hits", 0) / total["calls"], 4)
    return total


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def sum_metrics(texts: Mapping[str, str], failed: Sequence[str] = ()) -> str:
    """Prometheus text: every sample summed over the servers (counters, gauges, histogram
    buckets alike), plus ``tvcache_cluster_server_up{server=...}`` 1 or 0 per server."""
    kinds: dict[str, tuple[str, str]] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts.values():
        for family in text_string_to_metric_families(text):
            kinds.setdefault(family.name, (family.type, family.documentation))
            samples = sums.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = samples.get(key, 0.0) + sample.value
    lines = [
        "# HELP tvcache_cluster_server_up 1 if the live server answered this scrape, else 0",
        "# TYPE tvcache_cluster_server_up gauge",
    ]
    for url in sorted(texts):
        lines.append(f'tvcache_cluster_server_up{{server="{_escape(url)}"}} 1.0')
    for url in sorted(failed):
        lines.append(f'tvcache_cluster_server_up{{server="{_escape(url)}"}} 0.0')
    for name, samples in sums.items():
        kind, doc = kinds[name]
        lines += [f"# HELP {name} {doc} (sum over the cluster)", f"# TYPE {name} {kind}"]
        for (name_, labels), value in samples.items():
            lines.append(f"{name_}{_labels(dict(labels))} {_number(value)}")
    return "\n".join(lines) + "\n"
