"""CRIU's kernel-probe cache where /run is no tmpfs (:mod:`snapshots.criu_kdat`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from needs import unavailable

from snapshots import criu_kdat
from snapshots.criu import find_criu


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if os.geteuid() != 0 or find_criu() is None:
        unavailable("root and CRIU (scripts/setup-criu.sh)")
    monkeypatch.setattr(criu_kdat, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(criu_kdat, "_tmpfs_run", lambda: False)  # as on this kind of host
    criu_kdat._prepared.cache_clear()
    yield tmp_path / "cache"
    criu_kdat._prepared.cache_clear()


@pytest.mark.parametrize("perl", [True, False])
def test_a_cache_made_under_another_boot_is_made_again(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, perl: bool
) -> None:
    """A new kernel may differ: CRIU must never read a cache of another boot. Either wrapper
    (perl's syscalls, or unshare and mount) starts CRIU."""
    if not perl:
        which = criu_kdat.shutil.which
        monkeypatch.setattr(
            criu_kdat.shutil, "which", lambda name: None if name == "perl" else which(name)
        )
    (cache_dir / "run").mkdir(parents=True)
    (cache_dir / "run" / "criu.kdat").write_bytes(b"stale")
    (cache_dir / "boot_id").write_text("another-boot")
    wrapper = criu_kdat.criu_path_dir(("/run/tvcache-runc",))
    assert wrapper is not None
    assert ("perl" in (wrapper / "criu").read_text().splitlines()[0]) is perl
    assert (cache_dir / "boot_id").read_text() == criu_kdat._boot_id()
    made = (cache_dir / "run" / "criu.kdat").read_bytes()
    assert made != b"stale" and len(made) > 100
    done = subprocess.run(
        [str(wrapper / "criu"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "Version" in done.stdout, done.stderr


def test_no_wrapper_where_criu_keeps_its_cache_itself(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(criu_kdat, "_tmpfs_run", lambda: True)
    assert criu_kdat.criu_path_dir() is None
    assert criu_kdat.config() == ""
    assert not cache_dir.exists()
