"""Which runtime a Docker backend picks for its sandboxes, and why (no daemon needed)."""

from __future__ import annotations

import errno

import pytest

from sandbox import _runc, _runc_full_mounts
from sandbox.docker import DockerBackendError, _choose_runtime


@pytest.fixture
def runc_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVCACHE_DOCKER_RUNTIME", raising=False)
    monkeypatch.setattr(_runc, "available", lambda: None)


@pytest.fixture
def no_immutable_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose /run cannot hold immutable directories (tmpfs before Linux 6.0)."""

    def refuse() -> None:
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(_runc_full_mounts, "_usable", refuse)


@pytest.mark.usefixtures("runc_works", "no_immutable_flag")
def test_full_falls_back_to_docker_where_shared_directories_cannot_be_immutable() -> None:
    runtime, why = _choose_runtime(None, "full")
    assert runtime == "docker"
    assert "immutable" in why and "Docker is the fallback" in why


@pytest.mark.usefixtures("runc_works", "no_immutable_flag")
def test_fs_sandboxes_need_no_immutable_directories() -> None:
    assert _choose_runtime(None, "fs")[0] == "runc"


@pytest.mark.usefixtures("runc_works", "no_immutable_flag")
def test_asking_for_runc_full_there_says_why_it_cannot() -> None:
    with pytest.raises(DockerBackendError, match="immutable"):
        _choose_runtime("runc", "full")
