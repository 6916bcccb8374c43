"""Database engine, migrations and sessions.

``open_database`` creates the engine for ``BRIDGE_DATABASE_URL`` (a SQLite file by default,
PostgreSQL with ``postgresql+psycopg://``), applies the Alembic migrations up to head, and returns
the engine. SQLite runs in WAL mode with a busy timeout so the bridge's threads can share it.

``describe_db_error`` turns a driver error into one line and says whether it is worth retrying:
a server that refuses or drops connections is transient; a missing database, an unknown user,
a wrong password or an unknown driver are not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bridge.errors import StoreError, StoreUnavailable

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The newest migration in ``migrations/versions`` (a test checks it against Alembic's head): a
#: database at it is opened without loading Alembic.
SCHEMA_HEAD = "0009_spec_abi"

#: Driver messages that no retry will fix (PostgreSQL answers these while connecting).
_PERMANENT = (
    "does not exist",
    "password authentication failed",
    "no pg_hba.conf entry",
    "unable to open database file",
    "permission denied",
    "no password supplied",
)


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show nothing of it rather than a secret
        return "(unparsable BRIDGE_DATABASE_URL)"


def describe_db_error(exc: BaseException) -> tuple[str, bool]:
    """One line saying what went wrong with the database, and whether retrying may help.

    The line is the first line of the driver's message without its connection preamble (no
    URL, no password), e.g. ``database "x" does not exist`` or ``Connection refused``.

    Returns:
        (message, transient): transient for connection failures and dropped connections;
        not for errors no retry fixes (missing database or user, bad credentials, no driver).
    """
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    text = text.rsplit(" failed: ", 1)[-1].removeprefix("FATAL:").strip()
    if not isinstance(exc, (OperationalError, InterfaceError, DisconnectionError)):
        return f"{type(exc).__name__}: {text}", False
    return text, not any(marker in text for marker in _PERMANENT)


#: Page cache of one SQLite connection, KiB.
_SQLITE_CACHE_KIB = 512


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Each pooled connection keeps its own page cache (2 MiB by default, up to 15 connections
    # with the worker's threads); the file's pages stay in the OS's cache anyway.
    cursor.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; creates the parent directory of a SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not in_memory_sqlite(parsed):
            Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


#: ``pg_advisory_xact_lock`` key that serialises migrations of processes starting together.
_MIGRATION_LOCK = 0x6365_6272_6964_6765  # "cebridge"


def migrate(engine: Engine) -> None:
    """Applies every Alembic migration up to head (idempotent). On PostgreSQL, processes that
    start together migrate one after the other (a transaction-level advisory lock), so the
    later ones find the schema at head instead of racing to create it.

    A database already at ``SCHEMA_HEAD`` is left as it is without importing Alembic (with the
    Mako and Pygments it imports, ~10 MiB of a process's memory and a tenth of a second of its
    start: every restart, and every standby that takes over, skips them)."""
    if _revision(engine) == SCHEMA_HEAD:
        return
    from alembic import command  # only when a migration may be due (see above)
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    migrator = _transactional_sqlite(engine) if engine.dialect.name == "sqlite" else engine
    try:
        with migrator.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if migrator is not engine:
            migrator.dispose()


def _revision(engine: Engine) -> str | None:
    """The database's one migration revision; None before the first migration (or for a
    version table that does not hold exactly one row: Alembic then decides)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _transactional_sqlite(engine: Engine) -> Engine:
    """A one-off engine on ``engine``'s SQLite file whose transactions hold DDL too.

    Python's sqlite3 opens a transaction only before INSERT/UPDATE/DELETE, so a migration's
    CREATE TABLEs would each commit on their own, and a process killed half-way through its
    first migration would leave tables without their ``alembic_version`` row: every later start
    would fail with "table ... already exists". Here the driver's own transaction handling is off
    and every transaction starts with ``BEGIN IMMEDIATE`` (which also makes a second migrating
    process wait for the first), so a migration is all or nothing.
    """
    migrator = create_engine(
        engine.url, connect_args={"check_same_thread": False, "timeout": 30}, poolclass=NullPool
    )
    event.listen(migrator, "connect", _sqlite_pragmas)
    event.listen(migrator, "connect", _driver_autocommit)
    event.listen(migrator, "begin", _begin_immediate)
    return migrator


def _driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by the sqlite3 module


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_database(url: str, *, migrate_apart: bool = False) -> Engine:
    """Opens and migrates the database at ``url``.

    ``migrate_apart``: a migration that is due runs in a child interpreter
    (``migrate_in_child``), so that this process never loads Alembic (``ce-bridge run``: a
    long-running process keeps every module it imports, and Alembic with Mako and Pygments is
    ~10 MiB of its memory). An in-memory SQLite database, which no other process can open,
    is migrated here.

    Raises:
        StoreUnavailable: the database server cannot be reached right now (worth retrying).
        StoreError: the database cannot be opened or migrated for a reason no retry fixes.
            Either message names the URL without its password and the driver's reason.
    """
    engine: Engine | None = None
    try:
        engine = make_engine(url)
        if not migrate_apart or in_memory_sqlite(make_url(url)):
            migrate(engine)
        elif _revision(engine) != SCHEMA_HEAD:
            migrate_in_child(url)
    except BaseException as exc:
        if engine is not None:
            engine.dispose()
        if isinstance(exc, (SQLAlchemyError, OSError)):
            _, transient = describe_db_error(exc)
            error = StoreUnavailable if transient else StoreError
            raise error(describe_database_error(exc, url)) from exc
        raise
    return engine


def in_memory_sqlite(parsed: URL) -> bool:
    """Whether ``parsed`` names an in-memory SQLite database (no file: nothing another process
    can open, nothing to lock or create a directory for)."""
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


#: The environment variable that hands ``migrate_in_child``'s URL to the child.
MIGRATE_URL_VARIABLE = "BRIDGE_MIGRATE_DATABASE_URL"
#: Exit status of ``python -m bridge.store.migrate`` when the database cannot be reached now.
MIGRATE_UNAVAILABLE = 75  # EX_TEMPFAIL
#: Characters of the child's message kept (its one line, see ``bridge.store.migrate``).
_CHILD_MESSAGE_MAX = 500


def migrate_in_child(url: str) -> None:
    """Applies the migrations to ``url`` in a child interpreter (``python -m
    bridge.store.migrate``), waiting for it; on PostgreSQL under the same advisory lock as
    ``migrate``. The URL reaches the child in its environment, never on its command line.

    Raises:
        StoreUnavailable: the child could not reach the database.
        StoreError: the migration failed; its one line, without the URL's password.
    """
    env = {**os.environ, MIGRATE_URL_VARIABLE: url}
    done = subprocess.run(
        [sys.executable, "-m", "bridge.store.migrate"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if done.returncode == 0:
        return
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else f"the migration process exited with {done.returncode}"
    password = make_url(url).password
    if password:
        message = message.replace(str(password), "***")
    message = message[:_CHILD_MESSAGE_MAX]
    if done.returncode == MIGRATE_UNAVAILABLE:
        raise StoreUnavailable(message)
    raise StoreError(message)


def describe_database_error(exc: BaseException, url: str) -> str:
    """What went wrong opening ``url``, in one line and without its password.

    ``cannot connect to PostgreSQL at host:port (connection refused)``, ``database "x" does not
    exist on host:port``, ``role "x" does not exist``, ``cannot open the SQLite file PATH``, else
    the driver's first line with the password cut out.
    """
    parsed = make_url(url)
    text = str(getattr(exc, "orig", None) or exc)
    if parsed.password:
        text = text.replace(str(parsed.password), "***")
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    for pattern in (r'database "[^"]*" does not exist', r'role "[^"]*" does not exist'):
        found = re.search(pattern, text)
        if found:
            return f"{found.group(0)} on {where}"
    if "password authentication failed" in text:
        return f"password authentication failed on {where} for user {parsed.username!r}"
    if parsed.get_backend_name() == "postgresql" and "connection" in text.lower():
        reason = "connection refused" if "refused" in text.lower() else "no answer"
        return f"cannot connect to PostgreSQL at {where} ({reason})"
    if parsed.get_backend_name() == "sqlite":
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else text
        return f"cannot open the SQLite file {parsed.database}: {reason.splitlines()[0]}"
    shown = parsed.render_as_string(hide_password=True)
    first = text.splitlines()[0][:200] if text else type(exc).__name__
    return f"cannot open database {shown}: {first}"
