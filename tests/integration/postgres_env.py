"""Throwaway PostgreSQL databases for tests, on the server the ``postgres_admin`` fixture gives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine


@contextmanager
def fresh_database(admin: Engine) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on ``admin``'s server, dropped on exit (a
    plain context manager, so fixtures of any scope can use it)."""
    name = f"tvcache_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
