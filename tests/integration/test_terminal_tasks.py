"""The terminal tasks against real Docker: the golden rollout of every task scores 1, a
deliberately failing one scores less.

Plain Docker, no tvcache: one container per rollout (``docker run --network none``), each command
through ``docker exec ... bash -c`` in the task's working directory, then the task's checker.
Missing task images are built first with ``docker/tasks/build.sh`` (idempotent). Without a Docker
daemon the tests skip, except under CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
from needs import unavailable

from tvcache.bench import _terminal_workload as w

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TASKS = w.list_tasks()
COMMAND_TIMEOUT = 120


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"terminal task tests need a Docker daemon: {reason}; run scripts/setup-docker.sh")


@pytest.fixture(scope="module")
def task_images() -> None:
    """Docker answers and every task image exists (built now if missing)."""
    if shutil.which("docker") is None:
        _unavailable("no `docker` command on PATH")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        _unavailable(f"`docker info` failed: {info.stderr.strip()[:300]}")
    build = subprocess.run(
        [str(w.TASKS_DIR / "build.sh")], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, f"docker/tasks/build.sh failed:\n{build.stdout}\n{build.stderr}"


class Container:
    """A task container: commands run with ``bash -c`` in the task's working directory."""

    def __init__(self, task: w.TerminalTask) -> None:
        self.task = task
        self.name = f"tvcache-test-{task.name}-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["docker", "run", "-d", "--network", "none", "--name", self.name,
             "--label", "tvcache.test=terminal-tasks", task.image, "sleep", "infinity"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def run(self, command: str) -> tuple[int, str, float]:
        start = time.monotonic()
        result = subprocess.run(
            ["docker", "exec", "-w", self.task.workdir, self.name, "bash", "-c", command],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        return result.returncode, result.stdout + result.stderr, time.monotonic() - start

    def score(self) -> tuple[float, str]:
        code, output, _ = self.run(self.task.check_command)
        assert code == 0, f"{self.task.name}: the checker exited {code}:\n{output}"
        return w.parse_score(output), output

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, timeout=60)


@pytest.fixture
def container_of(task_images: None) -> Iterator[type[Container]]:
    made: list[Container] = []

    class Tracked(Container):
        def __init__(self, task: w.TerminalTask) -> None:
            super().__init__(task)
            made.append(self)

    yield Tracked
    for container in made:
        container.remove()


def _play(container: Container, rollout: tuple[str, ...]) -> list[str]:
    """Runs the rollout; returns a transcript for failure messages."""
    transcript = []
    for command in rollout:
        code, output, seconds = container.run(command)
        transcript.append(f"$ {command}\n[exit {code}, {seconds:.2f} s]\n{output[-1500:]}")
    return transcript


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_golden_rollout_solves_it(task: w.TerminalTask, container_of: type[Container]) -> None:
    container = container_of(task)
    before, _ = container.score()
    assert before < 1, f"{task.name}: the untouched task already scores {before}"
    transcript = _play(container, w.golden_rollout(task))
    score, output = container.score()
    assert score == 1, f"{task.name}: golden rollout scored {score}:\n{output}\n" + "\n".join(
        transcript
    )


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_failing_rollout_does_not(task: w.TerminalTask, container_of: type[Container]) -> None:
    container = container_of(task)
    _play(container, w.failing_rollout(task))
    score, output = container.score()
    assert score < 1, f"{task.name}: the failing rollout scored {score}:\n{output}"
