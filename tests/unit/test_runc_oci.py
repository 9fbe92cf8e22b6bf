"""Which OCI runtime the runc path uses, and how it is invoked (logic only: no runtime runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import _runc


def _installed(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}" if name in names else None)


def test_crun_is_chosen_where_installed_and_runc_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_runc.OCI_ENV, raising=False)
    _installed(monkeypatch, "runc", "crun")
    assert _runc.choose_oci()[0] == "crun"
    _installed(monkeypatch, "runc")
    oci, why = _runc.choose_oci()
    assert oci == "runc" and "install-crun.sh" in why
    monkeypatch.setenv(_runc.OCI_ENV, "runc")
    _installed(monkeypatch, "runc", "crun")
    assert _runc.choose_oci() == ("runc", f"{_runc.OCI_ENV}=runc")
    assert _runc.choose_oci("crun") == ("crun", "asked for crun")


def test_a_bad_or_missing_runtime_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_runc.OCI_ENV, "kata")
    with pytest.raises(_runc.RuncError, match=r"'kata' is not an OCI runtime \(use runc, crun"):
        _runc.choose_oci()
    _installed(monkeypatch, "runc")
    with pytest.raises(_runc.RuncError, match="no crun binary is on PATH"):
        _runc.choose_oci("crun")


def test_crun_creates_out_of_sight_of_a_hybrid_cgroup_v2_hierarchy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    unified = tmp_path / "unified"
    unified.mkdir()
    monkeypatch.setattr(_runc, "_UNIFIED", unified)
    (unified / "cgroup.controllers").write_text("\n")  # v2 mounted, no controllers: fine
    assert _runc.oci_command("crun", "create") == ["crun"]
    (unified / "cgroup.controllers").write_text("hugetlb\n")  # hybrid: crun refuses it
    wrapped = _runc.oci_command("crun", "create")
    assert wrapped[:4] == ["unshare", "--mount", "--propagation", "slave"]
    assert f"umount -l {unified}" in wrapped[-2] and wrapped[-1] == "crun"
    assert _runc.oci_command("crun", "start") == ["crun"]  # only create/run set cgroups up
    assert _runc.oci_command("runc", "create") == ["runc"]
