"""The terminal workload: task directories, the scripted policy, its groups (no Docker)."""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tvcache.bench import _terminal_workload as w

TASK_DIRS = sorted(p for p in w.TASKS_DIR.iterdir() if p.is_dir())


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


@pytest.fixture(scope="module")
def tasks() -> list[w.TerminalTask]:
    return w.list_tasks()


@pytest.fixture(scope="module")
def groups() -> list[w.TerminalGroup]:
    return w.build_groups(group_size=8, seed=0)


# -- task directories ------------------------------------------------------------------------------


def test_at_least_eight_task_directories() -> None:
    assert len(TASK_DIRS) >= 8


@pytest.mark.parametrize("directory", TASK_DIRS, ids=lambda p: p.name)
def test_task_directory_has_its_files(directory: Path) -> None:
    for name in ("Dockerfile", "instruction.md", "check.sh"):
        path = directory / name
        assert path.is_file(), f"{path} is missing"
        assert path.read_text().strip(), f"{path} is empty"
    dockerfile = (directory / "Dockerfile").read_text()
    assert re.search(r"^FROM tvcache/(base|tasks-common):bookworm$", dockerfile, re.M)
    assert 'tvcache.managed="true"' in dockerfile
    assert f'tvcache.task="{directory.name}"' in dockerfile
    check = directory / "check.sh"
    assert check.read_text().startswith("#!/usr/bin/env bash")
    assert os.access(check, os.X_OK), f"{check} is not executable"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "script",
    [*(d / "check.sh" for d in TASK_DIRS), w.TASKS_DIR / "build.sh"],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_shell_scripts_parse(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_common_dockerfile_exists() -> None:
    text = (w.TASKS_DIR / "Dockerfile.common").read_text()
    assert "FROM tvcache/base:bookworm" in text


# -- list_tasks ------------------------------------------------------------------------------------


def test_list_tasks_matches_the_directories(tasks: list[w.TerminalTask]) -> None:
    assert [t.name for t in tasks] == [d.name for d in TASK_DIRS]
    for task in tasks:
        assert task.image == f"tvcache/task-{task.name}:latest"
        assert task.check_command == "bash /task/check.sh"
        assert task.workdir == "/work"
        assert task.instruction == (w.TASKS_DIR / task.name / "instruction.md").read_text()


def test_list_tasks_reports_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkout of the tvcache repository"):
        w.list_tasks(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no terminal task"):
        w.list_tasks(tmp_path)


def test_list_tasks_reports_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "Dockerfile").write_text("FROM tvcache/base:bookworm\n")
    with pytest.raises(ValueError, match=r"lacks instruction\.md, check\.sh"):
        w.list_tasks(tmp_path)


def test_every_task_has_a_script(tasks: list[w.TerminalTask]) -> None:
    for task in tasks:
        assert w.script_for(task)
    with pytest.raises(ValueError, match="no rollout script"):
        w.script_for("no-such-task")


# -- parse_score -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "score"),
    [("1\n", 1.0), ("3/4 ok\n0.75\n", 0.75), ("x\n0.0\n\n  \n", 0.0), ("1.0", 1.0)],
)
def test_parse_score(output: str, score: float) -> None:
    assert w.parse_score(output) == score


@pytest.mark.parametrize("output", ["", "ok\n", "1.5\n", "-0.1\n"])
def test_parse_score_rejects(output: str) -> None:
    with pytest.raises(ValueError):
        w.parse_score(output)


# -- groups ----------------------------------------------------------------------------------------


def test_groups_are_deterministic_per_seed() -> None:
    assert w.build_groups(seed=7) == w.build_groups(seed=7)
    assert w.build_groups(seed=7) != w.build_groups(seed=8)


def test_a_tasks_group_does_not_depend_on_the_selection(groups: list[w.TerminalGroup]) -> None:
    by_name = {g.task.name: g for g in groups}
    for name in ("c-stats", "sqlite-shop"):
        (only,) = w.build_groups(seed=0, tasks=[name])
        assert only == by_name[name]


def test_group_shape(groups: list[w.TerminalGroup], tasks: list[w.TerminalTask]) -> None:
    assert [g.task for g in groups] == tasks
    assert all(len(g.rollouts) == 8 for g in groups)
    assert all(len(g.rollouts) == 3 for g in w.build_groups(group_size=3, seed=1))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="group_size"):
        w.build_groups(group_size=0)
    with pytest.raises(ValueError, match="unknown terminal task"):
        w.build_groups(tasks=["no-such-task"])


def test_rollouts_share_prefixes_then_diverge() -> None:
    for seed in range(10):
        for group in w.build_groups(group_size=8, seed=seed):
            pairs = list(itertools.combinations(group.rollouts, 2))
            shared = [_common_prefix(a, b) for a, b in pairs]
            # Every rollout of a group starts the same way (exploration) ...
            assert min(shared) >= 1, group.task.name
            # ... pairs share a real prefix on average, ...
            assert sum(shared) / len(shared) >= 2, group.task.name
    # ... and groups diverge: a group of 8 has several different trajectories.
    for group in w.build_groups(group_size=8, seed=0):
        assert len(set(group.rollouts)) >= 3, group.task.name


def test_rollout_lengths_are_realistic() -> None:
    lengths = [
        len(r)
        for seed in range(40)
        for g in w.build_groups(group_size=8, seed=seed)
        for r in g.rollouts
    ]
    assert min(lengths) >= w.MIN_CALLS and max(lengths) <= w.MAX_CALLS
    assert len(set(lengths)) >= 8  # variety in length too
    for task in w.list_tasks():
        for rollout in (w.golden_rollout(task), w.failing_rollout(task)):
            assert w.MIN_CALLS <= len(rollout) <= w.MAX_CALLS, task.name


def test_variety_across_groups() -> None:
    for task in w.list_tasks():
        rng = random.Random(0)
        samples = {w.sample_rollout(task, rng) for _ in range(200)}
        assert len(samples) >= 10, task.name
        assert w.golden_rollout(task) != w.failing_rollout(task), task.name
        # The golden path is one of the trajectories the policy can sample.
        assert w.golden_rollout(task) in samples or len(samples) >= 50, task.name


def test_some_tasks_run_background_services_that_later_calls_depend_on() -> None:
    with_service = 0
    for task in w.list_tasks():
        golden = w.golden_rollout(task)
        starts = [i for i, c in enumerate(golden) if "nohup " in c and "&" in c]
        if starts:
            with_service += 1
            later = " ".join(golden[starts[0] + 1 :])
            assert "curl" in later or "submit.py" in later, task.name
    assert with_service >= 2


def test_command_conventions() -> None:
    commands = {
        c
        for seed in range(20)
        for g in w.build_groups(group_size=8, seed=seed)
        for r in g.rollouts
        for c in r
    }
    for task in w.list_tasks():
        commands.update(w.golden_rollout(task))
        commands.update(w.failing_rollout(task))
    for command in commands:
        assert command == command.strip() and command
        # A cd only at the very start, to an absolute path: the next call never depends on it.
        if "cd " in command:
            assert re.match(r"cd /\S+ && ", command), command
            assert command.count("cd ") == 1, command
        assert "pkill" not in command and "kill %" not in command, command
        # A background start writes its output and PID to files.
        if "nohup " in command:
            assert "> /" in command and "2>&1 &" in command and "echo $! >" in command, command


def test_bench_modes_are_chosen_by_name_and_bad_names_say_what_exists() -> None:
    from snapshots import TvcacheError
    from tvcache.bench.terminal import MODES, select_modes

    assert select_modes(None) == MODES
    chosen = select_modes("fs fingerprint, strict prefix")
    assert [m.name for m in chosen] == ["fs fingerprint", "strict prefix"]
    assert chosen[0].state.fingerprints("bash") and chosen[0].state.merge
    assert not select_modes("fs read-only")[0].state.merge
    with pytest.raises(TvcacheError, match=r"unknown terminal bench mode.*strict") as caught:
        select_modes("strict, fs fingerprint")
    assert "choose from: strict prefix" in (caught.value.hint or "")
