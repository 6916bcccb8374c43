"""Process locks: one ``ce-bridge run`` per SQLite file, one writer per operator key on PostgreSQL.

Two processes writing with the same key would race for its nonces. The lock is held for the
process's life and released by ``release()`` (or by the process ending, however it ends):

- **SQLite**: ``fcntl.flock`` on ``<database file>.lock`` (created next to the database, with
  the holder's pid written in it for the operator). The kernel drops the lock when the process
  dies, SIGKILL included. Any second process is refused at start with one line
  (``AlreadyRunning``), whatever its key.
- **PostgreSQL**: a session-level advisory lock, keyed on the operator address, on a connection
  of its own. The lock is per key on purpose: processes with different keys may share one
  database (the ground for running several). A second process with the same key is not
  refused: it starts as the key's **standby** (one warning line), does everything else a
  process does (scans when it leads, claims CE work, serves the API) and asks ``held()``
  before each writer round, which takes the lock as soon as it is free (the holder's
  connection ended with its process); from then on this process sends the key's
  transactions. The holder's ``held()`` proves its lock's connection on each writer round (one
  ``SELECT 1``), so a holder that lost the lock to a standby stops at its next round.
  The server drops the lock when the holder's connection ends, so ``verify()``
  (called by the bridge's loops, at most every ``verify_every`` seconds) reconnects and takes
  it again after a lost connection, and raises ``AlreadyRunning`` if another process (a
  standby) took it meanwhile: the process that lost it stops.

An in-memory SQLite database needs no lock (no other process can open it).

The scanner's **leadership** (``acquire_leadership``) is the same kind of lock, one per (chain,
contract) instead of per key, and taken without refusing anyone: every process asks
``held()`` before a scan round; one holds it and scans, the others stand by and try again next
round. When the holder dies its connection closes and PostgreSQL releases the lock at once (a
SIGKILLed process's socket is closed by its kernel; a host that vanishes is found by the TCP
keepalives the lock connections ask the server for), so a standby takes over within one scan
interval. On SQLite (one process) leadership is always held.

Lock connections carry ``application_name`` = ``ce-bridge <role> pid <pid>``, so an operator
(or a test) can see in ``pg_stat_activity`` which process holds what.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bridge.errors import AlreadyRunning, StoreError, StoreUnavailable
from bridge.store.db import describe_db_error, in_memory_sqlite, shown_url

log = logging.getLogger("bridge.store")


class ProcessLock(Protocol):
    """A lock held for a bridge process's life."""

    def held(self) -> bool:
        """Whether this process holds the lock (may send the key's transactions), taking it
        if it is free: a standby becomes the holder here once the holder is gone. A holder's
        answer is proven on the spot (as ``verify()``, without its interval).

        Raises:
            AlreadyRunning: another process took it since this one held it.
            StoreUnavailable: the database cannot be reached to tell (retry later).
        """

    def verify(self) -> None:
        """Checks the lock is still held, taking it again after a lost connection (a standby
        has nothing to check).

        Raises:
            AlreadyRunning: another process took it since this one held it.
            StoreUnavailable: the database cannot be reached to check (retry later).
        """

    def release(self) -> None:
        """Releases the lock (idempotent)."""


class NoLock:
    """For an in-memory database: nothing to share, nothing to lock."""

    def held(self) -> bool:
        """Always held."""
        return True

    def verify(self) -> None:
        """Nothing to check."""

    def release(self) -> None:
        """Nothing to release."""


class FileLock:
    """An exclusive ``flock`` on ``path``, held until ``release()`` or the process's end.

    Raises:
        AlreadyRunning: another process holds it (the message names it and the holder's pid).
        StoreError: the lock file cannot be created.
    """

    def __init__(self, path: Path, database: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another ce-bridge run{holder} is using the database {database} "
                f"(it holds {path}): stop it first, or give this one its own BRIDGE_DATABASE_URL"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def held(self) -> bool:
        """Always held (a second process is refused at start)."""
        return True

    def verify(self) -> None:
        """A flock cannot be lost while the process lives."""

    def release(self) -> None:
        """Unlocks and closes the lock file (it stays on disk; an unlocked file is free)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (pid {pid})"
    return ""


def advisory_key(label: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``label`` (sha256, first 8 bytes)."""
    digest = hashlib.sha256(f"ce-bridge:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: Server-side TCP keepalives for lock connections: a holder whose host vanished without closing
#: its socket is dropped (and its locks released) after about idle + interval * count seconds.
_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


def _lock_engine(url: str, role: str) -> Engine:
    """An engine of unpooled connections for one lock, named ``ce-bridge <role> pid <pid>``."""
    return create_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "application_name": f"ce-bridge {role} pid {os.getpid()}",
            "options": _KEEPALIVES,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )


class _SessionAdvisoryLock:
    """What the operator's lock and a leadership share: a PostgreSQL session-level advisory lock
    (``key``) held on a connection of its own, and its release."""

    key: int
    _engine: Engine
    _guard: threading.Lock
    _conn: Connection | None
    _holding: bool

    def release(self) -> None:
        """Unlocks and closes the lock's connection (idempotent)."""
        with self._guard:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(SQLAlchemyError):
                    if self._holding:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
                    conn.close()
            self._holding = False
            self._engine.dispose()


class AdvisoryLock(_SessionAdvisoryLock):
    """A PostgreSQL session-level advisory lock on a connection of its own, for the writer of
    one operator key: taken at once if free, else this process stands by (see the module).

    Args:
        url: the database URL.
        operator: the operator address the lock is for (its key: ``advisory_key``).
        verify_every: seconds between two checks of the holder's connection in ``verify()``.

    Raises:
        StoreUnavailable: the database cannot be reached (retry).
        StoreError: the database refuses us for a reason no retry fixes.
    """

    def __init__(self, url: str, operator: str, *, verify_every: float = 5.0) -> None:
        self.operator = operator
        self.key = operator_key(operator)
        self._shown = shown_url(url)
        self._engine: Engine = _lock_engine(url, "operator")
        self._guard = threading.Lock()
        self._verify_every = verify_every
        self._checked = time.monotonic()
        self._conn: Connection | None = None
        self._holding = False
        try:
            self._try_take()
        except BaseException:
            self._engine.dispose()
            raise
        if not self._holding:
            log.warning(
                "operator %s: its writer is held by another ce-bridge run on %s (advisory "
                "lock %d); this process stands by: it scans when it leads, works CE jobs and "
                "serves the API, and sends this key's transactions once that process is gone",
                self.operator,
                self._shown,
                self.key,
            )

    @property
    def holding(self) -> bool:
        """Whether this process held the lock at the last look (no database round trip)."""
        return self._holding

    def _try_take(self) -> bool:
        """Takes the lock if it is free, on the standing connection (made if none); a failed
        connection is closed and reported as ``StoreUnavailable``/``StoreError``."""
        try:
            if self._conn is None:
                self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
                ).scalar()
            )
        except SQLAlchemyError as exc:
            self._drop()
            raise _store_error(self._shown, exc) from exc
        self._holding = got
        return got

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
                conn.close()

    def held(self) -> bool:
        """See ``ProcessLock.held``: one round trip, a standby's ``pg_try_advisory_lock`` or
        the holder's proof that its lock's connection is still there."""
        with self._guard:
            if self._holding:
                self._prove(time.monotonic())
                return True
            if self._try_take():
                self._checked = time.monotonic()
                log.warning(
                    "operator %s: the process holding its writer is gone; this process "
                    "sends its transactions now (advisory lock %d)",
                    self.operator,
                    self.key,
                )
            return self._holding

    def verify(self) -> None:
        """Checks the holder's connection (at most every ``verify_every`` s); after a lost
        connection, takes the lock again on a new one. A standby has nothing to check."""
        with self._guard:
            if not self._holding:
                return
            now = time.monotonic()
            if self._conn is not None and now - self._checked < self._verify_every:
                return
            self._prove(now)

    def _prove(self, now: float) -> None:
        """The holder's check: its lock's connection answers, or the lock is taken again on a
        new one; ``AlreadyRunning`` if another process took it meanwhile."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._checked = now
                return
            except SQLAlchemyError:
                self._drop()
                log.warning("the connection holding the operator's lock was lost")
        if not self._try_take():
            self._drop()
            raise AlreadyRunning(
                f"another ce-bridge run with operator {self.operator} took its writer "
                f"(advisory lock {self.key} on {self._shown}) after this process lost the "
                "connection holding it"
            )
        self._checked = now
        log.info("operator lock taken again (advisory lock %d)", self.key)


def _store_error(shown: str, exc: SQLAlchemyError) -> StoreError:
    reason, transient = describe_db_error(exc)
    error = StoreUnavailable if transient else StoreError
    return error(f"cannot open database {shown}: {reason}")


def acquire_process_lock(database_url: str, operator: str) -> ProcessLock:
    """Takes the lock of a bridge process for ``database_url`` and ``operator``.

    Returns:
        The lock; the caller releases it when the process stops. On PostgreSQL, if another
        process holds the key's writer, the lock is not held yet (``held()`` is False: this
        process stands by, and ``held()`` takes it once that process is gone).

    Raises:
        AlreadyRunning: another process uses the SQLite file: one line naming the database and
            the holder's pid.
        StoreUnavailable: PostgreSQL cannot be reached (retry).
        StoreError: the lock cannot be taken for another reason.
    """
    try:
        parsed = make_url(database_url)
    except ArgumentError:
        raise StoreError("BRIDGE_DATABASE_URL is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if in_memory_sqlite(parsed):
            return NoLock()
        database = Path(str(parsed.database)).expanduser().resolve()
        return FileLock(database.with_name(database.name + ".lock"), database)
    if backend == "postgresql":
        return AdvisoryLock(database_url, operator)
    raise StoreError(f"BRIDGE_DATABASE_URL: no process lock for a {backend} database")


class Leadership(Protocol):
    """A role one process holds at a time (the scanner): ``held()`` before each round."""

    def held(self) -> bool:
        """Whether this process holds the role now, taking it if it is free.

        Raises:
            StoreUnavailable: the database cannot be reached to tell (back off, retry).
        """

    def release(self) -> None:
        """Gives the role up (idempotent)."""


class SoleLeader:
    """One process per database (SQLite): the role is always held."""

    def held(self) -> bool:
        """Always true."""
        return True

    def release(self) -> None:
        """Nothing to release."""


class AdvisoryLeader(_SessionAdvisoryLock):
    """Leadership under a PostgreSQL session-level advisory lock on a connection of its own.

    ``held()`` costs one round trip: while holding, a ``SELECT 1`` proves the lock's connection
    (and so the lock) is still there; while standing by, a ``pg_try_advisory_lock`` that never
    waits. A lost connection is logged, and the role is tried again on a new one.

    Args:
        url: the database URL.
        label: what is led, e.g. ``scanner:<chain id>:<contract>`` (its key: ``advisory_key``).
        role: for log lines and ``application_name``.
    """

    def __init__(self, url: str, label: str, *, role: str = "scanner") -> None:
        self.key = advisory_key(label)
        self.role = role
        self._shown = shown_url(url)
        self._engine: Engine = _lock_engine(url, role)
        self._guard = threading.Lock()
        self._conn: Connection | None = None
        self._holding = False
        self._since = 0.0

    def held(self) -> bool:
        """See ``Leadership.held``."""
        with self._guard:
            try:
                return self._check()
            except SQLAlchemyError as exc:
                self._drop()
                raise _store_error(self._shown, exc) from exc

    def _check(self) -> bool:
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        if self._holding:
            self._conn.execute(text("SELECT 1"))
            return True
        got = bool(
            self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
        )
        if got:
            self._holding, self._since = True, time.monotonic()
            log.info("%s: this process leads now (advisory lock %d)", self.role, self.key)
        return got

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if self._holding:
            log.warning("%s: the connection holding the lead was lost; standing by", self.role)
        self._holding = False
        if conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
                conn.close()


def acquire_leadership(database_url: str, label: str, *, role: str = "scanner") -> Leadership:
    """The leadership of ``label`` among the processes on ``database_url``: an advisory lock on
    PostgreSQL, always held on SQLite (one process per file). Connects lazily: this never
    fails; ``held()`` reports the database's errors."""
    if make_url(database_url).get_backend_name() == "postgresql":
        return AdvisoryLeader(database_url, label, role=role)
    return SoleLeader()


def advisory_lock_held(conn: Connection, key: int) -> bool:
    """Whether some session holds the advisory lock ``key`` in the current database (read from
    ``pg_locks``, without taking it: a process coming back may take it meanwhile)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    found = conn.execute(
        text(
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database() "
            "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
        ),
        {"hi": unsigned >> 32, "lo": unsigned & 0xFFFF_FFFF},
    ).first()
    return found is not None


def operator_key(operator: str) -> int:
    """The advisory lock key of an operator address's process lock."""
    return advisory_key(f"operator:{operator.lower()}")


def scanner_label(chain_id: int, contract: str) -> str:
    """The leadership label of the log scanner of (``chain_id``, ``contract``)."""
    return f"scanner:{chain_id}:{contract.lower()}"
