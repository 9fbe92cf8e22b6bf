"""``tvcache serve`` stops cleanly whenever SIGTERM comes, and does not outlive its parent
when asked to (a Ray actor's server: docs/cluster.md, "Ray")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvcache.service import ServerProcess


def test_sigterm_right_after_the_ready_line_stops_the_server_cleanly(tmp_path: Path) -> None:
    """A stop sent as soon as the server printed its URL came before uvicorn listened for
    signals and was swallowed: the server ran on until SIGKILL (docs/cluster.md gap 4, seen
    first under Ray, where ``deploy`` then ``shutdown`` does exactly that). Three tries: the
    window is a race that, before the fix, two in three lost on a loaded machine."""
    for attempt in range(3):
        server = ServerProcess(tmp_path / f"home{attempt}", "--log-level", "warning")
        try:
            code = server.stop(signal.SIGTERM, timeout=30)
        except subprocess.TimeoutExpired:
            server.stop(signal.SIGKILL)
            pytest.fail(f"try {attempt}: SIGTERM right after start was ignored for 30 s")
        assert code == 0, f"try {attempt}: exit {code}\n{server.log()}"
        assert "tvcache serve: stopped" in server.log()


BLOCKED = """
import signal, subprocess, sys
from pathlib import Path
from tvcache.service import ServerProcess
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # what a Ray worker does
server = ServerProcess(Path(sys.argv[1]), "--log-level", "warning")
try:
    print(server.stop(signal.SIGINT, timeout=30), flush=True)
except subprocess.TimeoutExpired:
    server.stop(signal.SIGKILL)  # leave nothing behind
    print("ignored SIGINT for 30 s", flush=True)
"""


def test_sigint_stops_a_server_started_with_sigint_blocked(tmp_path: Path) -> None:
    """A Ray worker blocks SIGINT; a blocked signal stays blocked across exec, so the server of
    a Ray actor never saw Ctrl-C or SIGINT (it ran on; ``stop`` timed out)."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stdout + done.stderr


PARENT = """
import sys
from pathlib import Path
from tvcache.service import ServerProcess
import os
server = ServerProcess(Path(sys.argv[1]), env={"TVCACHE_EXIT_WITH_PARENT": str(os.getpid())})
print(server.pid, flush=True)
os._exit(9)  # dies without stopping its server, as a Ray worker killed by Ray does
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopted it, maybe late)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_started_with_exit_with_parent_stops_when_its_parent_dies(
    tmp_path: Path,
) -> None:
    parent = subprocess.run(
        [sys.executable, "-c", PARENT, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = int(parent.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _running(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("the server outlived the process that started it with TVCACHE_EXIT_WITH_PARENT")
