"""A cold fork on the runc path without the processes it needs not (docs/forks.md).

``create`` runs through a small helper process (a sealed copy of the runtime's binary; crun's
mount namespace made between fork and exec), ``start`` is the runtime's FIFO protocol done in
tvcache, and the container's first process is the supervisor itself. None of it may cost a
limit or an isolation property, leave anything behind, or hide a failure. Real runc and crun,
real overlay mounts, real Docker images.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker_env import cgroup_limits, sh, start
from needs import unavailable
from runc_env import CLEAN, leftovers

from sandbox import _runc
from sandbox._runc_runtime import _running
from sandbox.docker import DEFAULT_IMAGE

pytestmark = pytest.mark.docker

LIMITS = {"memory": "256m", "pids": 40, "cpus": 0.5, "file_mb": 2}
ATTEMPTS = (
    # (command, what must hold of its output)
    ("head -c 3M /dev/zero > big; echo rc=$?", "rc=1"),  # RLIMIT_FSIZE: file_mb
    (
        "for i in $(seq 60); do sleep 30 & done 2>&1 | tail -1; kill $(jobs -p) 2>/dev/null; wait",
        "Resource temporarily unavailable",
    ),
    ("cat /proc/keys /proc/timer_list | wc -c; ls /sys/firmware | wc -l", "0\n0"),  # masked
    ("echo 1 >/proc/sys/kernel/panic 2>/dev/null; echo rc=$?", "rc=1"),  # read-only
    ("unshare -n true 2>/dev/null; echo rc=$?", "rc=1"),  # seccomp: no new namespace
    ("cat /sys/class/net/*/address 2>/dev/null | wc -l; ls /sys/class/net", "lo"),  # loopback only
)


def test_a_fork_keeps_every_limit_and_isolation_and_its_runtime_sees_it_running(
    runc_backend: Any,
) -> None:
    backend = runc_backend()
    with start(backend, **LIMITS) as source:
        sh(source, "mkdir -p /work && echo base > /work/f")
        handle = source.snapshot("limits")
    with backend.fork(handle) as fork:
        assert fork.box is not None
        assert (_runc.state(fork.box.name) or {}).get("status") == "running"
        assert cgroup_limits(fork) == (256 << 20, 40, 50_000, ["lo"])
        assert sh(fork, "cat /work/f; cat /proc/1/cmdline | tr '\\0' ' '").output == "base\nbash "
        for command, expected in ATTEMPTS:
            assert expected in sh(fork, command, timeout=60).output, command
        name = fork.box.name
    backend.delete_snapshot(handle)
    backend.close()
    assert leftovers(backend) == CLEAN
    for controller in ("memory", "pids", "cpu"):  # the fork's cgroups went with it
        assert not (Path("/sys/fs/cgroup") / controller / _runc.CGROUP_PARENT / name).exists()


@pytest.fixture(params=["runc", "crun"])
def oci(request: pytest.FixtureRequest) -> str:
    reason = _runc.available()
    if reason is not None:
        unavailable(f"the runc path: {reason}")
    if shutil.which(str(request.param)) is None:
        unavailable(f"the OCI runtime {request.param}: sh scripts/install-crun.sh")
    return str(request.param)


def _bundle(tmp_path: Path, api: Any, args: list[str]) -> tuple[str, Path]:
    """A bundle of ``args`` over the default image (no limits: nothing of tvcache's box)."""
    name = f"tvcache-faststart-{uuid.uuid4().hex[:10]}"
    lowers = _runc.image_lowers(api.inspect_image(DEFAULT_IMAGE)["GraphDriver"])
    _runc.bare_bundle(tmp_path / name, name, lowers, args)
    return name, tmp_path / name


def test_a_start_whose_container_died_fails_clearly(oci: str, tmp_path: Path, api: Any) -> None:
    name, bundle = _bundle(tmp_path, api, ["sleep", "30"])
    try:
        _runc.runc(
            "create", "--bundle", str(bundle), "--pid-file", str(bundle / "pid"), name,
            log=bundle / "log", runtime=oci, fast=True,
        )  # fmt: skip
        pid = int((bundle / "pid").read_text())
        assert (_runc.state(name) or {}).get("status") == "created"
        os.kill(pid, signal.SIGKILL)
        while _running(pid):
            time.sleep(0.001)
        with pytest.raises(_runc.RuncError, match=f"{oci} start {name} failed"):
            _runc.start(name, oci, pid, timeout=5)
    finally:
        _runc.remove_bundle(name, bundle)


def test_a_create_the_runtime_refuses_says_why(oci: str, tmp_path: Path, api: Any) -> None:
    name, bundle = _bundle(tmp_path, api, ["sleep", "30"])
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["path"] = str(bundle / "missing")  # no root file system there
    (bundle / "config.json").write_text(json.dumps(config))
    try:
        with pytest.raises(_runc.RuncError, match=f"{oci} create --bundle failed: .+"):
            _runc.runc(
                "create", "--bundle", str(bundle), name, log=bundle / "log", runtime=oci, fast=True
            )
        assert name not in _runc.containers()
    finally:
        _runc.remove_bundle(name, bundle)


HELPER = """
import sys
from pathlib import Path
from sandbox._runc_spawn import Spawner
spawner = Spawner()
print(spawner.run(sys.argv[1], ["--version"], None, 30), flush=True)
pid = spawner._process.pid
before = Path(f"/proc/{pid}/cgroup").read_text()
print(spawner.run(sys.argv[1], ["--version"], None, 30, warm=True), flush=True)
print(Path(f"/proc/{pid}/cgroup").read_text() == before, flush=True)  # the warm-up moved it nowhere
print(pid, flush=True)
"""


def test_the_helper_process_ends_with_its_tvcache_process(oci: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELPER, oci], capture_output=True, text=True, timeout=60
    )
    code, warmed, stayed, helper = done.stdout.split()
    assert (code, warmed, stayed) == ("0", "0", "True"), done.stderr
    deadline = time.monotonic() + 30
    while _running(int(helper)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _running(int(helper))


FORKED = """
import os, sys
from sandbox._runc_spawn import SPAWNER
assert SPAWNER.run(sys.argv[1], ["--version"], None, 30) == 0
child = os.fork()
if child == 0:  # a forked worker asks its own helper, not its parent's
    os._exit(SPAWNER.run(sys.argv[1], ["--version"], None, 30))
print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
"""


def test_a_forked_process_gets_a_helper_of_its_own(oci: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORKED, oci], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "0", done.stderr
