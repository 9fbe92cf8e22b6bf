"""Every adapter's runnable script in examples/ runs and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from adapters_support import framework

EXAMPLES = Path(__file__).parents[2] / "examples"


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_gym_env_example() -> None:
    out = run("gym_env.py")
    assert "rollout 1 hit  'cat numbers.txt'" in out and "r=1.0" in out


def test_openai_tool_calls_example() -> None:
    out = run("openai_tool_calls.py")
    assert "has no argument(s) 'cwd'" in out and "hits: 2, misses: 2" in out


def test_rllm_env_example() -> None:
    out = run("rllm_env.py")
    assert "reward=1.0 done=True" in out and "hits: 2, misses: 2" in out


def test_skyrl_sql_example() -> None:
    framework("skyrl_gym", "skyrl")
    out = run("skyrl_sql.py")
    assert "byte-identical: True" in out and "served from cache 12" in out


def test_verl_tool_example() -> None:
    framework("verl.tools.base_tool", "verl")
    out = run("verl_tool.py")
    assert out.count("hit ") == 4 and "-> 'first\\nsecond\\n'" in out


@pytest.mark.slow
def test_remote_executor_example() -> None:
    out = run("remote_executor.py")
    assert "calls 12, hits 9, misses 3" in out
