"""A PostgreSQL database of its own for a test: created on 127.0.0.1:5432 (trust auth, user
postgres) and dropped afterwards, or the test is skipped when no server answers there."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def postgres_available() -> bool:
    """Whether a PostgreSQL server answers at ``PG_ADMIN_URL``."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def pg_admin(sql: str, **params: object) -> list[tuple[object, ...]]:
    """Runs ``sql`` as the server's admin (autocommit, on the ``postgres`` database)."""
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """A fresh database's URL (``<prefix>_<random>``); the database is dropped (connections
    and all) on exit. Outside pytest too (the benchmarks): the server must answer.

    Raises:
        sqlalchemy.exc.OperationalError: no PostgreSQL server answers at ``PG_ADMIN_URL``.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def postgres_database(prefix: str = "ce_bridge_test") -> Iterator[str]:
    """A fresh database's URL (``fresh_database``); the test is skipped when no server
    answers."""
    if not postgres_available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    with fresh_database(prefix) as url:
        yield url
