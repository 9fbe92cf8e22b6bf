"""docs/tools.md's complete example runs as written: its module, its script, its CLI line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "tools.md"


def test_the_complete_example_runs(tmp_path: Path) -> None:
    module, script = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[:2]
    (tmp_path / "myproject").mkdir()
    (tmp_path / "myproject" / "__init__.py").write_text("")
    (tmp_path / "myproject" / "tools.py").write_text(module)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TVCACHE_HOME": str(tmp_path / "home")}
    env.pop("TVCACHE_STORE_URL", None)
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[:3] == ["exit 0", "plan.txt", "poker_player.sqlite"]
    assert "./plan.txt:1:What are the names of poker players" in ran.stdout
    assert "('Patrick Pickett',)" not in lines[:3] and len(lines) > 5  # the gold query's rows

    calls = [
        {"tool": "write_note", "args": {"name": "n", "text": "x"}},
        {"tool": "grep", "args": {"pattern": "x"}},
    ]
    root = {"task_id": "replayed", "backend": "local", "template": str(tmp_path / "template")}
    trajectories = tmp_path / "t.jsonl"
    line = {
        "root": root,
        "calls": calls,
        "observations": ["exit 0\nn\npoker_player.sqlite\n", "./n:1:x\n"],
    }
    trajectories.write_text(json.dumps(line) + "\n")
    cli = [sys.executable, "-m", "tvcache.cli", "replay", str(trajectories)]
    tools = ["--tools", "myproject.tools:make_tools"]
    replayed = subprocess.run([*cli, *tools], env=env, capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "2 compared, 0 divergence(s)" in replayed.stdout
    unknown = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "unknown tool 'write_note'" in unknown.stderr
    bad = subprocess.run(
        [*cli, "--tools", "myproject.tools"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "package.module:factory" in bad.stderr
