"""How the host sets a sandbox's pid counter (:func:`sandbox._docker_shell.set_last_pid`):
this process's own pid namespace stands in for a container's (root needed, as for tvcache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox import _docker_shell as shell

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root, as tvcache does")


def test_what_the_writer_said_is_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "_LAST_PID", str(tmp_path / "missing" / "ns_last_pid"))
    with pytest.raises(shell.ShellError, match="cannot set the pid counter") as raised:
        shell.set_last_pid(os.getpid(), 300)
    assert "missing/ns_last_pid" in str(raised.value)  # sh's own words, not just an exit code
    assert raised.value.hint == "run tvcache as root on the Docker host"


def test_the_value_is_written_and_the_thread_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ns_last_pid"
    monkeypatch.setattr(shell, "_LAST_PID", str(target))
    own = os.readlink("/proc/thread-self/ns/pid_for_children")
    shell.set_last_pid(os.getpid(), 4321)
    assert target.read_text() == "4321\n"
    assert os.readlink("/proc/thread-self/ns/pid_for_children") == own


def test_a_vanished_container_is_an_error_not_a_crash() -> None:
    with pytest.raises(shell.ShellError, match="of pid 999999999"):
        shell.set_last_pid(999_999_999, 10)
