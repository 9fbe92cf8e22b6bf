"""The runc path's decisions that depend on the host's cgroup layout, with the /proc and
/sys inputs of hosts unlike this one (v1, hybrid, pure v2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox._runc import _hybrid_cgroups
from sandbox._runc_spawn import procs_file

HYBRID = "9:name=systemd:/\n8:pids:/user.slice\n4:memory:/x\n1:cpu,cpuacct:/\n0::/user.slice\n"
PURE_V2 = "0::/system.slice/tvcache.service\n"
V1_NO_PIDS = "4:memory:/x\n1:cpu,cpuacct:/\n"


@pytest.mark.parametrize(
    ("cgroups", "expected"),
    [
        (HYBRID, "/sys/fs/cgroup/pids/user.slice/cgroup.procs"),
        (PURE_V2, "/sys/fs/cgroup/system.slice/tvcache.service/cgroup.procs"),
        ("0::/\n", "/sys/fs/cgroup/cgroup.procs"),
        ("8:pids:/\n", "/sys/fs/cgroup/pids/cgroup.procs"),
        (V1_NO_PIDS, None),  # no warm-up: nothing to write to
        ("", None),
    ],
)
def test_the_warm_up_writes_to_the_hierarchy_the_host_has(
    cgroups: str, expected: str | None
) -> None:
    assert procs_file(cgroups) == expected


def test_crun_hides_the_v2_hierarchy_only_when_it_has_controllers_beside_v1(
    tmp_path: Path,
) -> None:
    unified = tmp_path / "unified"
    assert not _hybrid_cgroups(unified)  # pure v2 (or v1 only): nothing mounted there
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("\n")
    assert not _hybrid_cgroups(unified)  # v1 with an empty v2 hierarchy beside it
    (unified / "cgroup.controllers").write_text("cpu io memory pids\n")
    assert _hybrid_cgroups(unified)
