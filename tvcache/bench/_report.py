"""What every benchmark reports: per-mode results, percentiles, a table, a plot."""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import Observation

Key = tuple[int, int, int]  # (group, rollout, step)
Row = tuple[str, str, str]  # (label, summary key, format)


def percentile_ms(samples: Sequence[float], pct: int) -> float | None:
    """The ``pct``-th percentile of ``samples`` (seconds), in milliseconds; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
    return round(ordered[index] * 1000, 4)


@dataclass
class ModeResult:
    """What one mode measured; latencies are seconds as the rollout saw them."""

    name: str
    calls: int = 0
    hits: int = 0
    executed_calls: int = 0
    tool_seconds: float = 0.0
    wall_seconds: float = 0.0
    wrong: int = 0
    hit_latencies: list[float] = field(default_factory=list)
    call_latencies: list[float] = field(default_factory=list)
    miss_overheads: list[float] = field(default_factory=list)  # a miss's time beyond its tool's
    outputs: dict[Key, Observation] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "calls": self.calls,
            "hit_rate": round(self.hits / self.calls, 4) if self.calls else 0.0,
            "executed_calls": self.executed_calls,
            "tool_seconds": round(self.tool_seconds, 4),
            "wall_seconds": round(self.wall_seconds, 4),
            "hit_p50_ms": percentile_ms(self.hit_latencies, 50),
            "hit_p95_ms": percentile_ms(self.hit_latencies, 95),
            "call_p50_ms": percentile_ms(self.call_latencies, 50),
            "call_p95_ms": percentile_ms(self.call_latencies, 95),
            "miss_overhead_p50_us": _us(percentile_ms(self.miss_overheads, 50)),
            "wrong_observations": self.wrong,
            **self.extra,
        }


def _us(ms: float | None) -> float | None:
    return None if ms is None else round(ms * 1000, 1)


def grid(
    summaries: Mapping[str, Mapping[str, object]], rows: Sequence[Row], label_width: int = 26
) -> list[str]:
    """One column per mode (its name over its summary), one line per row; ``-`` for None."""
    width = max(13, *(len(name) + 2 for name in summaries))
    lines = [f"{'':<{label_width}}" + "".join(f"{name:>{width}}" for name in summaries)]
    for label, key, fmt in rows:
        cells = [s.get(key) for s in summaries.values()]
        lines.append(
            f"{label:<{label_width}}"
            + "".join(f"{'-' if c is None else fmt.format(c):>{width}}" for c in cells)
        )
    return lines


def table(results: Sequence[ModeResult], rows: Sequence[Row], first_cached: int) -> str:
    """Modes side by side; then, for each cached mode, its ratio to the first (no-cache) mode
    and whatever else it measured."""
    summaries = [r.summary() for r in results]
    lines = grid({r.name: s for r, s in zip(results, summaries, strict=True)}, rows)
    base = summaries[0]
    shown = {key for _, key, _ in rows}
    for result, summary in zip(results[first_cached:], summaries[first_cached:], strict=True):
        tool = float(base["tool_seconds"]) / max(float(summary["tool_seconds"]), 1e-9)  # type: ignore[arg-type]
        median = float(base["call_p50_ms"] or 0) / max(float(summary["call_p50_ms"] or 0), 1e-9)  # type: ignore[arg-type]
        extra = ", ".join(f"{k}={v}" for k, v in summary.items() if k not in shown)
        lines.append(
            f"{result.name}: {tool:.2f}x fewer tool seconds, {median:.2f}x lower median call "
            f"time than {results[0].name}; {extra}"
        )
    return "\n".join(lines)


def plot_path(value: str) -> str:
    """The ``--plot`` argument, checked before any work (a benchmark can run for an hour): its
    directory is created if missing and must take a file; matplotlib must be installed and
    know the file's format. Raises :class:`argparse.ArgumentTypeError` saying what to do."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value} is a directory: give a file name, e.g. {path / 'bench.png'}"
        )
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise argparse.ArgumentTypeError(
            f"cannot write the plot to {value}: {blocked} is a file, not a directory"
        )
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError(
            "writing a plot needs matplotlib: pip install 'tvcache[plot]', or leave out --plot"
        )
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix[1:].lower() not in formats:
        raise argparse.ArgumentTypeError(
            f"{value}: matplotlib cannot write {path.suffix!r} files; "
            f"end the name with one of .{', .'.join(sorted(formats))} (e.g. .png)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tvcache-plot-check-"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"cannot write the plot to {value} ({error}): choose a writable place"
        ) from error
    return str(path)


def plot(results: Sequence[ModeResult], path: str, title: str) -> None:
    """Tool-call time distribution per mode (left) and tool seconds executed (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.boxplot([[x * 1000 for x in r.call_latencies] for r in results], showfliers=False)
    left.set_xticks(range(1, len(results) + 1), [r.name for r in results])
    left.set_yscale("symlog", linthresh=0.01)
    left.set_ylim(bottom=0)  # times are never negative; symlog would draw a mirrored axis
    left.set_ylabel("tool-call time as the rollout sees it (ms)")
    colors = ["tab:red" if r.wrong else "tab:blue" for r in results]
    right.bar([r.name for r in results], [r.tool_seconds for r in results], color=colors)
    right.set_ylabel("tool seconds executed (red: served wrong observations)")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=20)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
