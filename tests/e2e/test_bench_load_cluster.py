"""``tvcache bench load --cluster N --quick --json``: the shape and the sanity of its report
(never its times): every server count ran, nothing was wrong or lost, the failover moved
sessions and answered them right."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from integration.needs import unavailable

from tvcache.bench._postgres import postgres_bindir

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]


def test_bench_load_cluster_quick_json_reports_each_server_count() -> None:
    if postgres_bindir() is None:
        unavailable("bench load --cluster needs PostgreSQL's server binaries (initdb, pg_ctl)")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tvcache.cli",
            "bench",
            "load",
            "--cluster",
            "2",
            "--quick",
            "--json",
            "--think-ms",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[bench load --cluster] 2 server(s)" in done.stderr  # progress is shown
    report = json.loads(done.stdout)
    rows = report["rows"]
    assert [row["servers"] for row in rows] == [1, 2]
    for row in rows:
        assert row["calls"] > 0 and 0 <= row["hits_per_second"] <= row["calls_per_second"]
        assert (row["errors"], row["wrong"], row["lost"]) == (0, 0, 0), row
        assert row["hit_p50_ms"] is None or row["hit_p50_ms"] <= row["hit_p99_ms"]
    routing = report["routing"]
    assert routing["client_hit_p50_ms"] > 0 and routing["cluster_client_hit_p50_ms"] > 0
    failover = report["failover"]
    assert failover["sessions_moved"] >= 1 and failover["wrong"] == 0
    assert 0 < failover["first_answer_ms"] <= failover["all_answered_ms"]
