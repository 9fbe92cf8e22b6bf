"""The ``tvcache`` command as a user runs it: a real process, a real store, real sandboxes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tvcache import Settings, open_engine

TVCACHE = [sys.executable, "-m", "tvcache.cli"]


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVCACHE_HOME": str(home)}
    env.pop("TVCACHE_STORE_URL", None)
    result = subprocess.run([*TVCACHE, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def populated(tmp_path: Path) -> Path:
    """A cache with one root: two rollouts sharing a prefix, then diverging."""
    template = tmp_path / "template"
    template.mkdir()
    (template / "data.txt").write_text("a\nb\n")
    engine = open_engine(Settings(home=tmp_path))
    for tail in ("wc -l data.txt", "echo c >> data.txt; wc -l data.txt"):
        with engine.session("demo-task", template=str(template)) as s:
            s.call("bash", command="cat data.txt")
            s.call("bash", command=tail)
    engine.close()
    assert engine.store is not None
    engine.store.close()
    return tmp_path


def test_stats_and_tree_show_the_graph(populated: Path) -> None:
    stats = json.loads(run(populated, "stats", "--json").stdout)
    assert len(stats) == 1
    (root,) = stats
    assert root["task_id"] == "demo-task" and root["nodes"] == 3
    assert root["hits"] == 1 and root["calls"] == 4
    table = run(populated, "stats").stdout
    assert "demo-task" in table and "25.0%" in table
    tree = run(populated, "tree", "demo-task").stdout.splitlines()
    assert tree[0].startswith("root ") and "(3 nodes)" in tree[0]
    assert "cat data.txt" in tree[1] and "hits 1" in tree[1]
    assert tree[2].startswith("    - bash") and tree[3].startswith("    - bash")
    assert run(populated, "tree", root["root_id"][:8], "--depth", "1").stdout.count("- bash") == 1


def test_tree_of_unknown_root_says_what_to_do(populated: Path) -> None:
    result = run(populated, "tree", "no-such-task", check=False)
    assert result.returncode == 2
    assert "no root matches 'no-such-task'" in result.stderr and "tvcache stats" in result.stderr


def test_corrupted_store_is_reported_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    garbage = os.urandom(4096)
    db.write_bytes(garbage)
    result = run(tmp_path, "stats", check=False)
    assert result.returncode == 2
    assert str(db) in result.stderr
    assert db.read_bytes() == garbage


def test_doctor_reports_every_level(tmp_path: Path) -> None:
    checks = json.loads(run(tmp_path, "doctor", "--json").stdout)
    names = {c["name"]: c for c in checks}
    assert names["store"]["ok"] and names["level fs (local backend)"]["ok"]
    assert "level full (docker backend)" in names
    for check in checks:
        assert check["ok"] or check["fix"], f"{check['name']} fails without saying how to fix it"


def test_gc_reconciles_and_enforces_budget(populated: Path) -> None:
    from sandbox import RootSpec
    from sandbox.local import LocalBackend

    backend = LocalBackend(snapshot_dir=populated / "snapshots", work_dir=populated / "sandboxes")
    sandbox = backend.start(RootSpec("demo-task", template=str(populated / "template")))
    orphans = [Path(sandbox.snapshot(f"never-recorded-{i}").location) for i in range(2)]
    sandbox.close()
    stranger = populated / "snapshots" / "not-ours"
    stranger.mkdir()
    report = json.loads(run(populated, "gc", "--budget", "0", "--json").stdout)
    assert report["orphans_removed"] >= 2 and not any(o.exists() for o in orphans)
    assert stranger.exists(), "a directory tvcache did not make is left alone"
    assert report["snapshot_bytes_after"] == 0
    stats = json.loads(run(populated, "stats", "--json").stdout)
    assert stats[0]["nodes"] == 3 and stats[0]["snapshots"] == 0


@pytest.mark.slow
def test_bench_sql_quick_json(tmp_path: Path) -> None:
    result = json.loads(run(tmp_path, "bench", "sql", "--quick", "--json").stdout)
    cost = result.pop("isolation_cost")  # measured side by side: isolated and not, per tool
    assert set(cost) == {"bash", "sqlite"}
    for row in cost.values():
        assert row["isolated_p50_ms"] > 0 and row["unisolated_p50_ms"] > 0
        assert row["added_p50_ms"] == pytest.approx(
            row["isolated_p50_ms"] - row["unisolated_p50_ms"], abs=0.002
        )
    assert set(result) == {"no_cache", "naive", "tvcache", "read-only", "fingerprint"}
    for mode in result.values():
        assert {
            "calls",
            "hit_rate",
            "tool_seconds",
            "wall_seconds",
            "hit_p50_ms",
            "hit_p95_ms",
            "wrong_observations",
        } <= set(mode)
    for mode in ("tvcache", "read-only", "fingerprint"):
        assert result[mode]["wrong_observations"] == 0
        # miss overhead split: misses on a ready sandbox, and those that started one (at least
        # each session's first miss) or forked, replayed or snapshotted
        assert result[mode]["steady_miss_overhead_p50_us"] > 0
        assert 0 < result[mode]["placing_misses"] < result[mode]["executed_calls"]
        assert result[mode]["placing_misses"] >= result[mode]["starts"] + result[mode]["forks"]
    assert result["no_cache"]["wall_vs_no_cache"] == 1.0
    assert result["tvcache"]["hit_rate"] > 0
    assert result["read-only"]["hit_rate"] > result["tvcache"]["hit_rate"]
    assert result["naive"]["wrong_observations"] > 0
    assert result["no_cache"]["hit_rate"] == 0
    assert result["tvcache"]["executed_calls"] < result["no_cache"]["executed_calls"]


def test_gc_enforces_the_budget_when_a_template_is_gone_or_edited(tmp_path: Path) -> None:
    from sandbox import RootSpec

    template = tmp_path / "template"
    template.mkdir()
    (template / "data.txt").write_text("a\n")
    engine = open_engine(Settings(home=tmp_path / "home"))
    spec = RootSpec("gone", template=str(template))
    rid = engine.open_root(spec)
    root = engine.graph.root(rid)
    assert root is not None
    sandbox = engine.backend.start(spec)
    assert engine.snapshots.take(sandbox, root, "test") is not None
    sandbox.close()
    engine.close()
    assert engine.store is not None
    engine.store.close()
    home = tmp_path / "home"
    (template / "data.txt").write_text("edited\n")
    edited = json.loads(run(home, "gc", "--json").stdout)
    assert edited["snapshot_bytes_before"] > 0
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert [r["root_id"] for r in stats] == [rid], "gc wrote a new root record"
    (template / "data.txt").unlink()
    template.rmdir()
    report = json.loads(run(home, "gc", "--budget", "0", "--json").stdout)
    assert report["snapshot_bytes_before"] > 0 and report["snapshot_bytes_after"] == 0
    assert report["evicted"] == 1
    stats = json.loads(run(home, "stats", "--json").stdout)
    assert [(r["root_id"], r["snapshots"]) for r in stats] == [(rid, 0)]
