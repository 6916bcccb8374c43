"""The database's binding, the stored dispatch pause and the SQLite process lock, on real SQLite
files (no chain, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from bridge.errors import AlreadyRunning, DatabaseBound
from bridge.store import control
from bridge.store.db import open_database
from bridge.store.locks import FileLock, NoLock, acquire_process_lock, advisory_key
from bridge.store.models import Binding, ScanCursor

A = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
B = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
SHOWN = "sqlite:///bridge.db"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'bridge.db'}")
    yield engine
    engine.dispose()


def bindings(db: Engine) -> list[tuple[int, str]]:
    with Session(db) as session:
        return [(b.chain_id, b.contract) for b in session.exec(select(Binding)).all()]


def test_the_first_start_binds_and_a_later_one_must_match(db: Engine) -> None:
    assert control.bound_target(db) is None
    assert control.bind(db, 31337, A.lower(), db_shown=SHOWN) == control.Target(31337, A)
    assert control.bind(db, 31337, A, db_shown=SHOWN) == control.Target(31337, A)
    with pytest.raises(DatabaseBound) as other_contract:
        control.bind(db, 31337, B, db_shown=SHOWN)
    message = str(other_contract.value)
    assert A in message and B in message and SHOWN in message and "\n" not in message
    assert "one database per chain and contract" in message
    with pytest.raises(DatabaseBound, match=r"chain 31337.*chain 10"):
        control.bind(db, 10, A, db_shown=SHOWN)
    assert bindings(db) == [(31337, A)]  # nothing written by a refused start


def test_a_database_from_before_bindings_is_bound_to_its_scan_cursor_contract(
    db: Engine,
) -> None:
    with Session(db) as session:
        session.add(ScanCursor(contract=A, block=12))
        session.commit()
    assert control.bound_target(db) == control.Target(None, A)
    with pytest.raises(DatabaseBound, match="an unknown chain, contract " + A):
        control.bind(db, 31337, B, db_shown=SHOWN)
    assert bindings(db) == []
    control.bind(db, 31337, A, db_shown=SHOWN)
    assert bindings(db) == [(31337, A)]


def test_the_dispatch_pause_is_stored_and_idempotent(db: Engine) -> None:
    assert not control.dispatch_paused(db)
    assert not control.set_dispatch_paused(db, False)  # no row, not paused: nothing to do
    assert control.set_dispatch_paused(db, True)
    assert not control.set_dispatch_paused(db, True)
    assert control.dispatch_paused(db)
    assert control.set_dispatch_paused(db, False)
    assert not control.dispatch_paused(db)


def test_one_process_lock_per_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'bridge.db'}"
    first = acquire_process_lock(url, A)
    assert isinstance(first, FileLock)
    assert first.path == tmp_path / "data" / "bridge.db.lock"
    with pytest.raises(AlreadyRunning) as refused:
        acquire_process_lock(url, B)  # any key: the file is the lock
    message = str(refused.value)
    assert "bridge.db.lock" in message and "pid " in message and "\n" not in message
    # Another file is another lock.
    acquire_process_lock(f"sqlite:///{tmp_path / 'other.db'}", A).release()
    first.release()
    first.release()  # idempotent
    acquire_process_lock(url, A).release()
    assert isinstance(acquire_process_lock("sqlite://", A), NoLock)


def test_advisory_keys_are_per_label_and_fit_a_bigint() -> None:
    keys = {advisory_key(f"operator:{a.lower()}") for a in (A, B)}
    assert len(keys) == 2
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert advisory_key(f"operator:{A.lower()}") == advisory_key(f"operator:{A.lower()}")


def test_the_migrations_make_exactly_the_models_tables(db: Engine) -> None:
    # Every table and column of bridge/store/models.py comes from a migration, and no migration
    # leaves anything the models do not know.
    with db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
