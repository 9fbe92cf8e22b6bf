"""``tvcache doctor``: which backends and snapshot levels work on this machine, and why not."""

from __future__ import annotations

import os
import sys

import httpx

import tvcache
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


def cluster_checks(settings: Settings) -> list[DoctorCheck]:
    """A cluster's parts, when there is one (a PostgreSQL store, servers on its live list, or
    ``TVCACHE_REGISTRY``): the lease tables, each live server's health and version, the
    registry. A SQLite store with no live server and no registry: nothing to check."""
    from sqlalchemy import func, select

    from tvcache._cluster_stats import live_urls
    from tvcache._schema import root_leases
    from tvcache._store import Store

    url = settings.resolved_store_url()
    registry = os.environ.get("TVCACHE_REGISTRY")
    checks: list[DoctorCheck] = []
    try:
        with Store(url) as store:
            urls = live_urls(store)
            with store.transaction("count the root leases", write=False) as conn:
                leases = conn.execute(select(func.count()).select_from(root_leases)).scalar_one()
    except Exception as error:  # the store check above says why; this says what it blocks
        if url.startswith("postgres") or registry:
            fix = "fix the store first (see the store check)"
            checks.append(DoctorCheck("cluster: leases table", False, str(error), fix))
        return checks + _registry_checks(registry)
    if not (url.startswith("postgres") or urls or registry):
        return []
    checks.append(DoctorCheck("cluster: leases table", True, f"root_leases holds {leases} rows"))
    checks.append(
        DoctorCheck(
            "cluster: live servers",
            bool(urls),
            f"{len(urls)} on the store's live list" if urls else "none on the store's live list",
            "start servers with `tvcache serve --advertise` or `tvcache cluster up`",
        )
    )
    token = os.environ.get("TVCACHE_TOKEN")
    checks += [_server_check(server, token) for server in urls]
    return checks + _registry_checks(registry)


def _server_check(url: str, token: str | None) -> DoctorCheck:
    name = f"cluster: server {url}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(f"{url}/v1/health", headers=headers, timeout=5.0)
        response.raise_for_status()
        version = str(response.json().get("version"))
    except (httpx.HTTPError, ValueError) as error:
        fix = "check the server's log; set TVCACHE_TOKEN to the cluster's token"
        return DoctorCheck(name, False, f"/v1/health: {error}", fix)
    same = version == tvcache.__version__
    detail = f"healthy, version {version}" + ("" if same else f" (this is {tvcache.__version__})")
    return DoctorCheck(name, same, detail, "run one tvcache version on every node")


def _registry_checks(registry: str | None) -> list[DoctorCheck]:
    """``TVCACHE_REGISTRY`` answers the OCI distribution API's base endpoint (``GET /v2/``)."""
    if not registry:
        return []
    base = registry if "://" in registry else f"http://{registry}"
    try:
        response = httpx.get(f"{base.rstrip('/')}/v2/", timeout=5.0)
    except httpx.HTTPError as error:
        fix = "start the registry (docker-registry) or fix TVCACHE_REGISTRY"
        return [DoctorCheck("cluster: registry", False, f"{base}: {error}", fix)]
    ok = response.status_code in (200, 401)  # 401: it answers, and wants credentials
    detail = f"{base}/v2/ answered {response.status_code}"
    return [DoctorCheck("cluster: registry", ok, detail, "is TVCACHE_REGISTRY a registry?")]


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
    checks += cluster_checks(settings)
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
