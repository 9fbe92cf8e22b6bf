"""``tvcache doctor``: which backends and snapshot levels work on this machine, and why not."""

from __future__ import annotations

import sys

from sandbox import DoctorCheck
from tvcache._factory import docker_backend, local_backend
from tvcache._settings import Settings


def _store_check(settings: Settings) -> DoctorCheck:
    from tvcache._store import Store

    url = settings.resolved_store_url()
    try:
        Store(url).close()
    except Exception as error:  # any failure is the answer here
        fix = "set TVCACHE_STORE_URL or --store-url"
        return DoctorCheck("store", False, f"{url}: {error}", fix)
    return DoctorCheck("store", True, url)


def _docker_checks(settings: Settings) -> list[DoctorCheck]:
    """The Docker backend's own checks (daemon, CRIU, images, a real fork at each level)."""
    try:
        backend = docker_backend(settings)
    except Exception as error:  # no SDK, no daemon: the answer, not a crash
        return [
            DoctorCheck(
                "docker: engine",
                False,
                f"no Docker daemon answers ({type(error).__name__}: {error})",
                "run `bash scripts/setup-docker.sh` (installs docker.io, CRIU, starts dockerd)",
            )
        ]
    return backend.doctor()


def run_doctor(settings: Settings) -> list[DoctorCheck]:
    """Every check, in the order a user would fix them; the last lines sum up each level."""
    checks = [
        DoctorCheck(
            "python", sys.version_info >= (3, 11), sys.version.split()[0], "use Python >= 3.11"
        ),
        _store_check(settings),
    ]
    local_checks = local_backend(settings).doctor()
    docker_checks = _docker_checks(settings)
    checks += local_checks + docker_checks
    local_ok = all(c.ok for c in local_checks)
    by_name = {c.name: c for c in docker_checks}
    checks.append(
        DoctorCheck(
            "level fs (local backend)",
            local_ok,
            "directory snapshots" if local_ok else "a local check failed",
            "see the local checks above",
        )
    )
    for level in ("fs", "full"):
        found = by_name.get(f"docker: level {level}")
        checks.append(
            DoctorCheck(
                f"level {level} (docker backend)",
                found is not None and found.ok,
                found.detail if found is not None else "the Docker checks stopped earlier",
                "see the docker checks above",
            )
        )
    return checks
