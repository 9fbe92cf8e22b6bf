"""Integration fixtures: a store URL on each database tvcache supports.

PostgreSQL is real: ``$TVCACHE_TEST_POSTGRES_URL`` (a role allowed to create databases), or a
private throwaway cluster started once per session from the local PostgreSQL binaries. Each
test gets a database of its own. Without PostgreSQL the postgres cases skip, except under CI
(``$CI`` set), where they fail: CI must never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from needs import unavailable
from postgres_env import fresh_database
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

from snapshots import TvcacheError
from tvcache.bench._postgres import PrivatePostgres

_INSTALL_HINT = (
    "install it with `apt-get install postgresql` (or scripts/install-postgres.sh), "
    "or set TVCACHE_TEST_POSTGRES_URL to a server where this role may create databases"
)


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"PostgreSQL tests need a server: {reason}; {_INSTALL_HINT}")


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on a PostgreSQL server, to create and drop test databases."""
    url = os.environ.get("TVCACHE_TEST_POSTGRES_URL")
    cluster: PrivatePostgres | None = None
    if not url:
        try:
            cluster = PrivatePostgres()
        except TvcacheError as error:
            _unavailable(error.message)
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
    with fresh_database(postgres_admin) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cache.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty store on each supported database."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


from cluster_env import template  # noqa: E402, F401  (cluster tests: the root's files)
from docker_env import api, full_runtime, level, make_backend, store  # noqa: E402, F401
from runc_env import runc_backend  # noqa: E402, F401  (runc path fixture)
