"""Integration fixtures: a store URL on each database tvcache supports.

PostgreSQL is real: ``$TVCACHE_TEST_POSTGRES_URL`` (a role allowed to create databases), or a
private throwaway cluster started once per session from the local PostgreSQL binaries. Each
test gets a database of its own. Without PostgreSQL the postgres cases skip, except under CI
(``$CI`` set), where they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from needs import unavailable
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

_INSTALL_HINT = (
    "install it with `apt-get install postgresql` (or scripts/install-postgres.sh), "
    "or set TVCACHE_TEST_POSTGRES_URL to a server where this role may create databases"
)


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"PostgreSQL tests need a server: {reason}; {_INSTALL_HINT}")


def _postgres_bindir() -> Path | None:
    def version(initdb: Path) -> tuple[int, ...]:
        name = initdb.parent.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Cluster:
    """A private PostgreSQL cluster in a temporary directory, fast and unsafe (fsync off)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="tvcache-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                _unavailable("running as root and there is no `postgres` user to run initdb as")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self.user = "postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a PostgreSQL server, to create and drop test databases."""
    url = os.environ.get("TVCACHE_TEST_POSTGRES_URL")
    cluster: _Cluster | None = None
    if not url:
        bindir = _postgres_bindir()
        if bindir is None:
            _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) found")
            return
        cluster = _Cluster(bindir)
        try:
            url = cluster.start()
        except BaseException:
            cluster.stop()
            raise
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def postgres_url(postgres_admin: Engine) -> Iterator[str]:
    """A fresh, empty database; dropped afterwards."""
    name = f"tvcache_test_{uuid.uuid4().hex[:12]}"
    with postgres_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres_admin.url.set(database=name).render_as_string(hide_password=False)
    with postgres_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cache.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty store on each supported database."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


from docker_env import api, level, make_backend, store  # noqa: E402, F401  (Docker fixtures)
from runc_env import runc_backend  # noqa: E402, F401  (runc path fixture)
