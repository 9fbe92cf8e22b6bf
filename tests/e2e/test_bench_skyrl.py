"""``tvcache bench skyrl``: skyrl-gym's SQL env unwrapped, in process and through the service;
``bench --tools``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from adapters_support import framework

from snapshots import TvcacheError
from tvcache import load_tools, open_engine
from tvcache._settings import Settings
from tvcache.bench.skyrl import DATA_ENV, make_work

TVCACHE = [sys.executable, "-m", "tvcache.cli"]
MODES = {
    "unwrapped",
    "in-process_strict",
    "in-process_read-only",
    "service_x4_strict",
    "service_x4_read-only",
}


@pytest.mark.slow
def test_bench_skyrl_quick_json_serves_hits_identical_to_the_unwrapped_env(tmp_path: Path) -> None:
    framework("skyrl_gym", "skyrl")
    env = {**os.environ, "TVCACHE_HOME": str(tmp_path)}
    env.pop("TVCACHE_STORE_URL", None)
    done = subprocess.run(
        [*TVCACHE, "bench", "skyrl", "--quick", "--json", "--group-size", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == MODES
    calls = result["unwrapped"]["calls"]
    assert calls > 50 and result["unwrapped"]["hit_rate"] == 0
    for name in MODES - {"unwrapped"}:
        mode = result[name]
        assert mode["calls"] == calls and mode["reward_differences"] == 0
        assert mode["inconsistent"] == 0  # every hit is its history's execution, byte for byte
        if name.startswith("in-process"):  # the env's own process: byte-identical
            assert mode["observation_differences"] == 0
        else:  # the server's process shows the env's frozenset rows in its own order
            assert mode["observation_differences"] == mode["env_order_only"]
        assert 0 < mode["hit_rate"] < 1
        assert mode["executed_calls"] >= round(calls * (1 - mode["hit_rate"]))
        assert {"added_p50_ms", "added_p99_ms", "call_p99_ms", "wall_seconds"} <= set(mode)
    # strict prefix matching serves what the group repeats, locally and remotely alike
    assert result["service_x4_strict"]["hit_rate"] == result["in-process_strict"]["hit_rate"]


def test_serve_tools_take_the_env_tools_that_run_in_the_server_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tools tvcache.bench.skyrl:server_tools``: host tools (a spec and ``run(args)``)
    load and are served by the engine, in its process, beside the sandbox tools."""
    framework("skyrl_gym", "skyrl")
    work = make_work(1, 2, 0, tmp_path)
    monkeypatch.setenv(DATA_ENV, work.data)
    (tool,) = load_tools(["tvcache.bench.skyrl:server_tools"])
    assert tool.spec.name == "sql"
    engine = open_engine(Settings(home=tmp_path / "home"), tools=[tool], persist=False)
    try:
        assert {"sql", "bash", "sqlite"} <= set(engine.backend.tool_specs())
        env = work.make_env(0)
        from tvcache.adapters.skyrl import CachedTextEnv

        plain = work.make_env(0).step(work.groups[0].rollouts[0].actions[0])
        wrapped = CachedTextEnv(env, engine, work.groups[0].task_id)
        wrapped.init([])
        assert wrapped.step(work.groups[0].rollouts[0].actions[0]) == plain
        wrapped.close()
    finally:
        engine.close()
    monkeypatch.delenv(DATA_ENV)
    with pytest.raises(TvcacheError, match=DATA_ENV):
        load_tools(["tvcache.bench.skyrl:server_tools"])


def test_bench_with_a_tool_that_cannot_load_says_so_before_running(tmp_path: Path) -> None:
    done = subprocess.run(
        [*TVCACHE, "--home", str(tmp_path), "bench", "load",
         "--tools", "no_such_module_anywhere:make"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--tools 'no_such_module_anywhere:make': cannot load it" in done.stderr
