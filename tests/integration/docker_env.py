"""Docker fixtures shared by the integration tests (registered in ``conftest.py``).

Without a daemon (or the base image) the tests that use them skip, except under CI (``$CI``
set), where they fail: CI must never pass by skipping. Every test works in its own store
(``snapshot_dir``); afterwards whatever carries that store's label is removed, then checked gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import pytest
from needs import unavailable

from sandbox import Observation, RootSpec, Sandbox, ToolCall, _runc
from sandbox.docker import DEFAULT_IMAGE, RUNTIME_ENV, DockerBackend, DockerSandbox, Level
from snapshots import docker_fs
from snapshots.docker_fs import LABEL_STORE

BackendFactory = Callable[..., DockerBackend]


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"Docker backend tests need {reason}")


@pytest.fixture(scope="module")
def api() -> Any:
    try:
        client = docker_fs.connect(timeout=60)
        client.ping()
    except Exception as error:
        _unavailable(f"a Docker daemon ({error}); run scripts/setup-docker.sh")
    try:
        client.inspect_image(DEFAULT_IMAGE)
    except Exception:
        _unavailable(f"the image {DEFAULT_IMAGE}; build it with bash docker/base/build.sh")
    return client


@pytest.fixture
def store(tmp_path: Path, api: Any) -> Iterator[Path]:
    """A fresh snapshot dir. Afterwards: every sandbox must have been closed, and whatever is
    labelled with this store (snapshot images a test kept) is removed, then checked gone.
    """
    snapshot_dir = (tmp_path / "snapshots").resolve()
    yield snapshot_dir
    label = f"{LABEL_STORE}={snapshot_dir}"
    leaked = api.containers(all=True, filters={"label": label})
    for container in leaked:
        api.remove_container(container["Id"], force=True)
    for _ in range(5):  # children before parents: a parent with children cannot go
        for image in api.images(all=True, filters={"label": label}):
            try:
                api.remove_image(image["Id"], force=True)
            except Exception as error:
                if "child" not in str(error) and not docker_fs.is_not_found(error):
                    raise
    assert api.containers(all=True, filters={"label": label}) == []
    assert api.images(all=True, filters={"label": label}) == []
    assert [c["Names"] for c in leaked] == [], "sandboxes left running"


@pytest.fixture
def make_backend(store: Path, api: Any) -> Iterator[BackendFactory]:
    """Backends on this store, on the runtime ``$TVCACHE_DOCKER_RUNTIME`` picks (runc where it
    works); afterwards each is closed and the runc path checked clean: no container, no mount
    (runc's own tests check layers; other tests may keep snapshots)."""
    made: list[DockerBackend] = []

    def make(level: Level = "fs", **kwargs: Any) -> DockerBackend:
        kwargs.setdefault("default_timeout", 30)
        backend = DockerBackend(store, level, api=api, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
    assert_no_runc_left(store / "runc", mounts_under=store.parent)


def assert_no_runc_left(root: Path, mounts_under: Path | None = None) -> None:
    """Remove runc containers whose bundle lies under ``root`` and mounts under ``mounts_under``
    (``root`` by default), then fail if there were any: a test's sandboxes must all be gone
    once its backends are closed."""
    left = [
        name
        for name in _runc.containers()
        if Path(str((_runc.state(name) or {}).get("bundle", ""))).is_relative_to(root)
    ]
    for name in left:
        _runc.delete(name)
    mounts = _runc.mounted_under(mounts_under or root)
    for mount in mounts:
        _runc.unmount(mount)
    assert (left, mounts) == ([], []), f"runc sandboxes left: {left}, mounts left: {mounts}"


@pytest.fixture(params=["fs", "full", "full-docker"])
def level(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Level:
    """Each level; ``full`` on both paths (runc where it works, and Docker's checkpoints)."""
    name, _, runtime = str(request.param).partition("-")
    if runtime:
        monkeypatch.setenv(RUNTIME_ENV, runtime)
    return cast(Level, name)


@pytest.fixture(params=["runc", "docker"])
def full_runtime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``full`` test on both paths: backends made after this use ``request.param``."""
    monkeypatch.setenv(RUNTIME_ENV, str(request.param))
    return str(request.param)


def cgroup_limits(box: DockerSandbox) -> tuple[int, int, int, list[str]]:
    """What the kernel enforces on ``box``, on either runtime: memory bytes, pids, CPU quota
    (µs per 100 ms) from its cgroups (v1), and its network interfaces."""
    paths = {}
    for line in Path(f"/proc/{box.init_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            paths[controller] = path

    def read(controller: str, name: str) -> str:
        return (
            Path("/sys/fs/cgroup") / controller / paths[controller].lstrip("/") / name
        ).read_text()

    links = Path(f"/proc/{box.init_pid}/net/dev").read_text().splitlines()[2:]
    return (
        int(read("memory", "memory.limit_in_bytes")),
        int(read("pids", "pids.max")),
        int(read("cpu", "cpu.cfs_quota_us")),
        sorted(line.split(":")[0].strip() for line in links),
    )


def sh(sandbox: Sandbox, command: str, **args: Any) -> Observation:
    return sandbox.run(ToolCall("bash", {"command": command, **args}))


def start(backend: DockerBackend, **options: Any) -> DockerSandbox:
    return backend.start(RootSpec("task", backend="docker", options=options))
