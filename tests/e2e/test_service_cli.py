"""``tvcache restore`` and ``tvcache replay`` as a user runs them, on the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tvcache import NeverSnapshot, Settings, open_engine

CALLS = ["echo a > f", "echo b >> f", "cat f"]


def tvcache(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TVCACHE_HOME": str(home)}
    env.pop("TVCACHE_STORE_URL", None)
    command = [sys.executable, "-m", "tvcache.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A cache holding one trajectory of task ``demo``; its home, template and node ids."""
    template = tmp_path / "template"
    template.mkdir()
    (template / "README").write_text("demo\n")
    # no snapshots: restores replay from the root however fast this machine runs bash
    engine = open_engine(Settings(home=tmp_path / "home"), policy=NeverSnapshot())
    with engine.session("demo", template=str(template)) as session:
        nodes = [session.call("bash", command=c).node_id for c in CALLS]
    engine.close()
    assert engine.store is not None
    engine.store.close()
    return tmp_path / "home", template, nodes


def test_restore_a_node_and_a_path_then_remove(
    recorded: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    home, _template, nodes = recorded
    by_node = tvcache(home, "restore", "demo", "--node", nodes[1][:10])
    assert by_node.returncode == 0, by_node.stderr
    directory = Path(by_node.stdout.strip())
    assert (directory / "f").read_text() == "a\nb\n" and "replayed 2 call(s)" in by_node.stderr
    path = tmp_path / "path.jsonl"
    calls = [*CALLS, "echo c >> f"]
    path.write_text(
        "".join(json.dumps({"tool": "bash", "args": {"command": c}}) + "\n" for c in calls)
    )
    by_path = tvcache(home, "restore", "demo", "--path", str(path), "--json")
    assert by_path.returncode == 0, by_path.stderr
    done = json.loads(by_path.stdout)
    assert done["node_id"] == nodes[2] and done["executed"] == 1
    assert (Path(done["location"]) / "f").read_text() == "a\nb\nc\n"
    shell = subprocess.run(
        ["bash", "-c", f"source {Path(done['location']).parent / 'shell.sh'}; pwd; echo $HOME"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shell.stdout.split() == [done["location"]] * 2
    assert tvcache(home, "gc").returncode == 0  # crash recovery leaves restored sandboxes alone
    listed = json.loads(tvcache(home, "restore", "--list", "--json").stdout)
    assert len(listed) == 2 and directory.exists()
    assert tvcache(home, "restore", "--remove", "all").returncode == 0
    assert not directory.exists()
    unknown = tvcache(home, "restore", "demo", "--node", "ffff")
    assert unknown.returncode == 2 and "no nodes" in unknown.stderr


def test_replay_reports_every_divergence(
    recorded: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    home, template, _nodes = recorded
    root = {"task_id": "demo", "backend": "local", "template": str(template)}
    calls = [{"tool": "bash", "args": {"command": c}} for c in CALLS]
    trajectories = tmp_path / "t.jsonl"
    lines = [
        {"root": root, "calls": calls},  # compared with the cache
        {"root": root, "calls": calls, "observations": ["", "", "a\nb\n"]},
        {"root": root, "calls": calls, "observations": ["", {"exit_code": 0}, "a\nB\n"]},
    ]
    trajectories.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = tvcache(home, "replay", str(trajectories), "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["trajectories"], report["calls"], report["compared"]) == (3, 9, 9)
    (divergence,) = report["divergences"]
    assert (divergence["trajectory"], divergence["call"]) == (2, 2)
    assert (
        divergence["expected"]["output"] == "a\nB\n" and divergence["actual"]["output"] == "a\nb\n"
    )
    assert divergence["diff"].endswith("@@ -1,2 +1,2 @@\n a\n-B\n+b\n")
    trajectories.write_text("".join(json.dumps(line) + "\n" for line in lines[:2]))
    text = tvcache(home, "replay", str(trajectories))
    assert text.returncode == 0 and "0 divergence(s)" in text.stdout
    trajectories.write_text('{"root": {}, "calls": []}\n')
    broken = tvcache(home, "replay", str(trajectories))
    assert broken.returncode == 2 and "line 1" in broken.stderr


def test_replay_with_nothing_to_compare_fails(
    recorded: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    home, template, _nodes = recorded
    calls = [{"tool": "bash", "args": {"command": c}} for c in CALLS]
    unknown = {"task_id": "not-in-the-cache", "backend": "local", "template": str(template)}
    known = {"task_id": "demo", "backend": "local", "template": str(template)}
    trajectories = tmp_path / "t.jsonl"
    lines = [{"root": known, "calls": calls}, {"root": unknown, "calls": calls}]
    trajectories.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = tvcache(home, "replay", str(trajectories))
    assert result.returncode == 1, result.stdout
    assert "trajectory 1: nothing to compare" in result.stdout and "--home" in result.stdout
    report = json.loads(tvcache(home, "replay", str(trajectories), "--json").stdout)
    assert report["uncompared"] == [1] and report["compared"] == 3 and report["failed"]
    trajectories.write_text(json.dumps(lines[1]) + "\n")
    alone = tvcache(home, "replay", str(trajectories))
    assert alone.returncode == 1 and "0 compared" in alone.stdout
