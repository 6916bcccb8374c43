"""``UnitOfWork.insert``: rows without ORM objects, as the constructor would fill them, seen by
every later statement of their transaction and gone with it when it rolls back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, update
from sqlmodel import Session, col, select

from bridge.store.db import open_database
from bridge.store.models import OutputFile, RemoteCall, RemoteCancel, Update
from bridge.store.uow import Store
from tests.builders import stored_job


def _store(tmp_path: Path) -> Store:
    return Store(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"))


def test_inserted_rows_get_the_models_defaults(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.begin() as uow:
        uow.insert(Update, job_id=7, status=4, data="uri")
        uow.insert(RemoteCancel, job_id=7, remote_job_id="r-1", reason="cancelled")
        uow.record_calls(7, [("create", True, "r-1"), ("status", False, None)])
        uow.commit()
    with Session(store.db) as session:
        queued = session.exec(select(Update)).one()
        built = Update(job_id=7, status=4, data="uri")
        for name in ("result_hash", "tx_id", "applied", "skip_reason", "held", "split_group"):
            assert getattr(queued, name) == getattr(built, name), name
        assert queued.id is not None and queued.created_at is not None
        cancel = session.exec(select(RemoteCancel)).one()
        assert (cancel.attempts, cancel.done_at, cancel.request_json) == (0, None, None)
        calls = session.exec(select(RemoteCall).order_by(col(RemoteCall.id))).all()
        assert [(c.kind, c.ok, c.detail) for c in calls] == [
            ("create", True, "r-1"),
            ("status", False, None),
        ]
        assert len({c.id for c in calls}) == 2 and all(c.at is not None for c in calls)


def test_a_later_statement_of_the_transaction_sees_the_inserted_rows(tmp_path: Path) -> None:
    """As an ORM object's autoflush would: an UPDATE after the insert (the ledger drops a
    job's unsent writes in the transaction that queued one) changes the inserted row too."""
    store = _store(tmp_path)
    with store.begin() as uow:
        uow.insert(Update, job_id=3, status=2, data="remote-1")
        seen = uow.session.exec(select(Update).where(col(Update.job_id) == 3)).all()
        assert [u.data for u in seen] == ["remote-1"]
        uow.session.exec(update(Update).where(col(Update.job_id) == 3).values(applied=False))
        uow.commit()
    with Session(store.db) as session:
        assert session.exec(select(Update)).one().applied is False


def test_inserted_rows_are_lost_with_their_transaction(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.begin() as uow:
        uow.insert(Update, job_id=3, status=2)
        uow.session.exec(select(Update)).all()  # written (not committed)
        uow.insert(Update, job_id=4, status=2)  # not written yet
    with store.begin() as uow:
        uow.insert(Update, job_id=5, status=2)
        uow.drop_rows()
        uow.commit()
    with Session(store.db) as session:
        assert session.exec(select(Update)).all() == []


def test_the_inserted_tables_point_at_no_row_added_as_an_object() -> None:
    # Rows written by ``insert`` before a statement of their unit go ahead of the session's
    # pending objects (the statement's autoflush writes those next): a foreign key from them
    # to a row added as an object in the same unit (a new job) would fail on PostgreSQL.
    # ``update_outbox.tx_id`` points at a ``chain_tx`` row, written by the writer alone, and
    # is None when a row is inserted.
    tables = [RemoteCall, Update, OutputFile, RemoteCancel]
    targets = {
        fk.target_fullname
        for model in tables
        for fk in model.__table__.foreign_keys  # type: ignore[attr-defined]
    }
    assert targets <= {"chain_tx.id"}


def test_at_a_commit_the_new_objects_are_written_before_the_inserted_rows(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    written: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT"):
            written.append(statement.split()[2])

    event.listen(store.db, "before_cursor_execute", record)
    with store.begin() as uow:
        uow.session.add(stored_job(41))
        uow.insert(Update, job_id=41, status=2, data="r-41")
        uow.commit()
    assert written == ["job", "update_outbox"]
