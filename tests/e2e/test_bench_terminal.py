"""``tvcache bench terminal`` end to end on one small task: real Docker, the judge's counts in
the JSON, the plot written into a directory that did not exist, nothing left running."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from integration.needs import unavailable

from sandbox import _runc

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _containers_under(directory: Path) -> list[str]:
    """runc/crun containers whose bundle lies under ``directory`` (other users' are ignored)."""
    found = []
    for name in _runc.containers():
        state = _runc.state(name) or {}
        if str(state.get("bundle", "")).startswith(str(directory)):
            found.append(name)
    return found


def test_a_small_terminal_bench_judges_counts_and_plots(tmp_path: Path) -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode
    ):
        unavailable("bench terminal needs a Docker daemon: run scripts/setup-docker.sh")
    plot = tmp_path / "out" / "sub" / "bench.png"
    env = {**os.environ, "TMPDIR": str(tmp_path), "TVCACHE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "tvcache.cli", "bench", "terminal", "--tasks", "csv-report",
         "--group-size", "2", "--modes", "tvcache fs", "--json", "--plot", str(plot)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert set(report) == {"no_cache", "tvcache_fs"}
    cached = report["tvcache_fs"]
    assert cached["hit_rate"] > 0  # both rollouts start with the same reads
    assert cached["wrong_observations"] == 0
    assert cached["score_mismatches"] == 0
    for mode in report.values():
        assert {"nondeterministic_differences", "duration_only_differences"} <= set(mode)
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert _containers_under(tmp_path) == []
