"""``tvcache doctor``: which backends and snapshot levels work on this machine, and why not."""

from __future__ import annotations

import shutil
import subprocess
import sys

from sandbox import DoctorCheck
from tvcache._settings import Settings


def _store_check(settings: Settings) -> DoctorCheck:
    from tvcache._store import Store

    url = settings.resolved_store_url()
    try:
        Store(url).close()
    except Exception as error:  # any failure is the answer here
        return DoctorCheck(
            "store", False, f"{url}: {error}", "set TVCACHE_STORE_URL or --store-url"
        )
    return DoctorCheck("store", True, url)


def _docker_check() -> DoctorCheck:
    try:
        import importlib

        docker = importlib.import_module("docker")  # the SDK, not this repo's docker/ folder
        client = docker.from_env(timeout=5)
        info = client.info()
    except Exception as error:
        return DoctorCheck(
            "docker engine",
            False,
            f"no Docker daemon answers ({type(error).__name__})",
            "run `scripts/setup-docker.sh` (installs docker.io, starts dockerd --experimental)",
        )
    experimental = bool(info.get("ExperimentalBuild"))
    detail = f"{info.get('ServerVersion')} storage={info.get('Driver')} experimental={experimental}"
    return DoctorCheck(
        "docker engine",
        experimental,
        detail,
        "" if experimental else "restart dockerd with --experimental (checkpoints need it)",
    )


def _criu_check() -> DoctorCheck:
    candidates = [shutil.which("criu"), "/opt/tvcache/criu/bin/criu"]
    binary = next((c for c in candidates if c and shutil.which(c)), None)
    if binary is None:
        return DoctorCheck(
            "criu", False, "no criu binary", "run `scripts/setup-criu.sh` (CRIU 4.x)"
        )
    result = subprocess.run([binary, "check"], capture_output=True, text=True, timeout=60)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    detail = f"{binary}: {version.stdout.strip().splitlines()[0] if version.stdout else '?'}"
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["unknown"]
        return DoctorCheck(
            "criu",
            False,
            f"{detail}; `criu check` failed: {reason[0]}",
            "install CRIU 4.x: `scripts/setup-criu.sh`",
        )
    return DoctorCheck("criu", True, detail)


def run_doctor(settings: Settings) -> list[DoctorCheck]:
    """Every check, in the order a user would fix them."""
    from sandbox.local import LocalBackend

    checks = [
        DoctorCheck(
            "python", sys.version_info >= (3, 11), sys.version.split()[0], "use Python >= 3.11"
        )
    ]
    checks.append(_store_check(settings))
    local = LocalBackend(snapshot_dir=settings.snapshot_dir, work_dir=settings.sandbox_dir)
    local_checks = [DoctorCheck(f"local: {c.name}", c.ok, c.detail, c.fix) for c in local.doctor()]
    checks.extend(local_checks)
    local_ok = all(c.ok for c in local_checks)
    checks.append(
        DoctorCheck(
            "level fs (local backend)",
            local_ok,
            "directory snapshots" if local_ok else "a local check failed",
            "see the local checks above",
        )
    )
    docker_check = _docker_check()
    checks.append(docker_check)
    criu_check = _criu_check()
    checks.append(criu_check)
    checks.append(
        DoctorCheck(
            "level full (docker backend)",
            False,
            "the Docker backend is not part of this build yet",
            "use the local backend (level fs); container forking is tracked as its own issue",
        )
    )
    return checks
