"""What isolating local commands costs per call, measured side by side in one run.

Two local backends on the same template, one isolated (bubblewrap) and one with isolation
disabled, run the same calls alternately (so load on the machine hits both alike); the report
is the p50 of each and the difference. ``bash`` pays for namespaces and mounts on every call;
``sqlite`` runs in the server and pays only for handing files it made to the sandbox's uid.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

from sandbox import LocalBackend, RootSpec, Sandbox, ToolCall
from sandbox._isolation import Isolation

CALLS = (
    ToolCall("bash", {"command": "ls -l >/dev/null; echo $((6*7))"}),
    ToolCall("sqlite", {"sql": "SELECT count(*) FROM sqlite_master"}),
)


def _ms(box: Sandbox, call: ToolCall) -> float:
    start = time.perf_counter()
    box.run(call)
    return (time.perf_counter() - start) * 1000


def measure(template: Path, workdir: Path, rounds: int = 60) -> dict[str, dict[str, float]]:
    """``{tool: {"unisolated_p50_ms", "isolated_p50_ms", "added_p50_ms"}}``; empty if
    isolation does not work here (the bench then says so)."""
    isolated = LocalBackend(workdir / "isolated" / "snapshots")
    if not isolated.isolated:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = LocalBackend(workdir / "plain" / "snapshots", isolation=Isolation(enabled=False))
    spec = RootSpec("isolation-cost", template=str(template))
    report: dict[str, dict[str, float]] = {}
    with isolated.start(spec) as boxed, plain.start(spec) as free:
        for call in CALLS:
            times: dict[str, list[float]] = {"isolated": [], "unisolated": []}
            for _ in range(3):  # warm both
                _ms(boxed, call), _ms(free, call)
            for _ in range(rounds):
                times["isolated"].append(_ms(boxed, call))
                times["unisolated"].append(_ms(free, call))
            p50 = {name: statistics.median(values) for name, values in times.items()}
            report[call.tool] = {
                "unisolated_p50_ms": round(p50["unisolated"], 3),
                "isolated_p50_ms": round(p50["isolated"], 3),
                "added_p50_ms": round(p50["isolated"] - p50["unisolated"], 3),
            }
    return report


def format_report(report: dict[str, dict[str, float]]) -> str:
    if not report:
        return "isolation cost: not measured (isolation does not work here; see tvcache doctor)"
    lines = ["isolation cost per call (local backend, same calls alternated, p50 ms):"]
    lines.append(f"  {'tool':<8} {'unisolated':>11} {'isolated':>9} {'added':>8} {'ratio':>6}")
    for tool, row in report.items():
        ratio = row["isolated_p50_ms"] / row["unisolated_p50_ms"] if row["unisolated_p50_ms"] else 0
        lines.append(
            f"  {tool:<8} {row['unisolated_p50_ms']:>11.3f} {row['isolated_p50_ms']:>9.3f} "
            f"{row['added_p50_ms']:>8.3f} {ratio:>5.2f}x"
        )
    return "\n".join(lines)
