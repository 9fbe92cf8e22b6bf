"""An engine refuses a root with options its backend does not know when the root is opened,
before anything is stored, on both backends (it used to accept it and fail every call)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docker_env import BackendFactory

from sandbox import Backend, LocalBackend, RootSpec
from snapshots import TvcacheError
from tvcache import Engine
from tvcache._store import Store

BAD = [{"colour": "red"}, {"env": ["A=1"]}]


def _refused_at_open(backend: Backend, tmp_path: Path, options: dict[str, object]) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cache.db'}")
    engine = Engine(backend, store)
    try:
        with pytest.raises(TvcacheError, match="option"):
            engine.session(RootSpec("t", backend=backend.name, options=options))
        assert store.roots() == [] and store.node_count() == 0
    finally:
        engine.close()
        store.close()


@pytest.mark.parametrize("options", BAD)
def test_local_backend_refuses_unknown_options_at_open(
    tmp_path: Path, options: dict[str, object]
) -> None:
    backend = LocalBackend(tmp_path / "snapshots", work_dir=tmp_path / "sandboxes")
    _refused_at_open(backend, tmp_path, options)


@pytest.mark.docker
@pytest.mark.parametrize("options", BAD)
def test_docker_backend_refuses_unknown_options_at_open(
    tmp_path: Path, make_backend: BackendFactory, options: dict[str, object]
) -> None:
    _refused_at_open(make_backend(), tmp_path, options)
