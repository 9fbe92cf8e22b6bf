"""The local backend's start-up sweep, when another server shares the home (several Ray
nodes on one machine): a sandbox directory that disappears while it is looked at is that
server's business, not a crash of this one's start."""

from __future__ import annotations

from pathlib import Path

from sandbox.local import LocalBackend


def test_a_sandbox_directory_gone_mid_sweep_is_not_stale_and_not_an_error(tmp_path: Path) -> None:
    # before the fix: FileNotFoundError from stat() after the missing owner file, and
    # `tvcache serve` (a Ray actor's restarted server) died at start-up
    assert LocalBackend._is_stale_sandbox(tmp_path / "local-0123456789abcdef") is False


def test_a_sandbox_directory_without_owner_is_stale_only_when_old(tmp_path: Path) -> None:
    fresh = tmp_path / "local-fresh"
    fresh.mkdir()
    assert LocalBackend._is_stale_sandbox(fresh) is False
