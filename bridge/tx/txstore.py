"""The writer's persistence: one operator key's transactions and the outbox, in the database.

``TxStore`` is the database half of the transaction manager's I/O shell (the node half is
``bridge.tx.manager``; the decisions are ``bridge.tx.plan``): every query and write of
``chain_tx`` and ``update_outbox`` rows for one sender. A new transaction and the claim of its
updates are one commit (``insert``); an end state and the marks on its updates are one commit
(``end``).

Several keys on one PostgreSQL database: the updates of a new transaction are claimed in the
session that stores it (``claim``, ``queued``, ``insert``: ``FOR UPDATE SKIP LOCKED``, so other
writers skip them); an end state is written once, under the transaction row's lock, whichever
process gets there first (``end``); a reorg reopens every key's transactions (``reopen_after``);
``orphaned_senders`` names the keys whose process is gone, whose transactions another writer
finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

from sqlalchemy import Engine, func
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bridge.store.claims import is_shared
from bridge.store.locks import advisory_lock_held, operator_key
from bridge.store.models import ChainTx, Job, TxState, Update

log = logging.getLogger("bridge.tx")


class TxStore:
    """The stored transactions of ``sender`` and the queued updates.

    Args:
        db: the bridge's database.
        sender: the operator address (checksummed).
    """

    def __init__(
        self, db: Engine, sender: str, write_lock: AbstractContextManager[object] | None = None
    ) -> None:
        self._db = db
        self._sender = sender
        #: PostgreSQL: other processes (other keys) write to the same tables.
        self.shared = is_shared(db)
        # SQLite has one writer at a time, and a connection that finds the file locked sleeps
        # in growing steps (up to 100 ms) before it tries again: against the CE worker's
        # back-to-back group commits the writer's commits lost for seconds in a burst. On
        # SQLite its writes queue on the process's own lock (the store's) instead, which hands
        # over at once. PostgreSQL locks rows, not the database: no such lock there.
        self._write_lock: AbstractContextManager[object] = (
            write_lock if write_lock is not None and not self.shared else nullcontext()
        )

    def session(self) -> Session:
        """A session whose loaded rows stay usable after its commit."""
        return Session(self._db, expire_on_commit=False)

    def writing(self) -> AbstractContextManager[object]:
        """Held around each write transaction of the writer (see ``__init__``)."""
        return self._write_lock

    def claim(self) -> Session:
        """The session of one new transaction: ``queued`` claims its updates in it and
        ``insert`` stores it there; the claim ends with the session (a rollback frees it)."""
        return self.session()

    # ------------------------------------------------------------------ reads

    def unconfirmed(self) -> list[ChainTx]:
        """This key's unconfirmed transactions, lowest nonce first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChainTx)
                    .where(
                        col(ChainTx.sender) == self._sender,
                        col(ChainTx.state) == TxState.UNCONFIRMED,
                    )
                    .order_by(col(ChainTx.nonce))
                ).all()
            )

    def count_unconfirmed(self) -> int:
        """How many of this key's transactions are unconfirmed."""
        query = (
            select(func.count())
            .select_from(ChainTx)
            .where(col(ChainTx.sender) == self._sender, col(ChainTx.state) == TxState.UNCONFIRMED)
        )
        with self.session() as session:
            return int(session.exec(query).one())

    def unmined_costs(self) -> list[tuple[int, int, int]]:
        """``(id, gas limit, max fee per gas)`` of this key's unconfirmed transactions not
        seen in a block yet: what the node holds against the key's balance."""
        with self.session() as session:
            rows = session.exec(
                select(ChainTx.id, ChainTx.gas_limit, ChainTx.max_fee_per_gas).where(
                    col(ChainTx.sender) == self._sender,
                    col(ChainTx.state) == TxState.UNCONFIRMED,
                    col(ChainTx.mined_block).is_(None),
                )
            ).all()
        return [(int(cast(int, i)), int(g), int(f)) for i, g, f in rows]

    def raw_of(self, tx_id: int) -> str:
        """The stored signed bytes of transaction ``tx_id`` (0x-hex; empty if it has none)."""
        with self.session() as session:
            raw = session.exec(select(ChainTx.raw_tx).where(col(ChainTx.id) == tx_id)).first()
        return raw or ""

    def backlog(self) -> tuple[int, int]:
        """Updates waiting for a transaction, and this key's unconfirmed transactions."""
        with self.session() as session:
            waiting = session.exec(
                select(func.count())
                .select_from(Update)
                .where(col(Update.tx_id).is_(None), col(Update.applied).is_(None))
            ).one()
        return int(waiting), self.count_unconfirmed()

    @staticmethod
    def updates_of(session: Session, tx_id: int) -> list[Update]:
        """The updates a transaction carries, in their order."""
        return list(
            session.exec(
                select(Update).where(col(Update.tx_id) == tx_id).order_by(col(Update.id))
            ).all()
        )

    def jobs_of(self, tx_id: int) -> list[int]:
        """The job ids of a transaction's updates."""
        with self.session() as session:
            return [u.job_id for u in self.updates_of(session, tx_id)]

    def next_nonce(self) -> int:
        """Highest nonce stored for this key + 1 (0 when none is)."""
        with self.session() as session:
            highest = session.exec(
                select(func.max(col(ChainTx.nonce))).where(col(ChainTx.sender) == self._sender)
            ).one()
        return 0 if highest is None else int(highest) + 1

    def callback_limits(self, job_ids: list[int]) -> dict[int, int]:
        """Each job's callback gas limit, from its ``JobSubmitted`` event (0: no callback)."""
        if not job_ids:
            return {}
        with self.session() as session:
            rows = session.exec(
                select(Job.job_id, Job.callback_gas_limit).where(col(Job.job_id).in_(job_ids))
            ).all()
        return {int(job_id): int(limit or 0) for job_id, limit in rows}

    def queued(
        self, session: Session, limit: int
    ) -> tuple[Update, list[Update], dict[int, int]] | None:
        """The oldest queued update and at most ``limit`` queued updates that may go with it
        (its split group: a set that reverted on-chain is never re-sent whole), with their
        jobs' callback limits; None when nothing is queued. Held and dropped updates wait.

        On PostgreSQL the rows are claimed in ``session`` (``claim``): locked until it ends,
        and rows another writer has locked are skipped, not waited for. On SQLite (one
        process) the read ends here and ``insert``'s write opens its own transaction."""
        eligible = (
            col(Update.tx_id).is_(None),
            col(Update.applied).is_(None),  # not dropped by the engine
            col(Update.held).is_(False),
        )
        first = session.exec(
            select(Update)
            .where(*eligible)
            .order_by(col(Update.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if first is None:
            return None
        group = (
            col(Update.split_group).is_(None)
            if first.split_group is None
            else col(Update.split_group) == first.split_group
        )
        batch = list(
            session.exec(
                select(Update)
                .where(*eligible, group)
                .order_by(col(Update.id))
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
        )
        if not self.shared:
            session.commit()
        return first, batch, self.callback_limits([u.job_id for u in batch])

    # ------------------------------------------------------------------ writes

    def insert(self, session: Session, row: ChainTx, update_ids: list[int]) -> bool:
        """Stores a new signed transaction and assigns it the updates, in one commit of
        ``session`` (the claim's). False (nothing stored) when another writer stored that nonce
        or claimed an update first."""
        with self._write_lock:
            return self._insert(session, row, update_ids)

    def _insert(self, session: Session, row: ChainTx, update_ids: list[int]) -> bool:
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            log.warning(
                "nonce %d of %s is already stored by another writer; backing off",
                row.nonce,
                self._sender,
            )
            return False
        claimed = session.exec(
            sql_update(Update)
            .where(col(Update.id).in_(update_ids), col(Update.tx_id).is_(None))
            .values(tx_id=row.id)
        )
        if claimed.rowcount != len(update_ids):
            session.rollback()
            log.warning("updates %s were claimed by another writer", update_ids)
            return False
        session.commit()
        return True

    def set(self, tx: ChainTx, **fields: Any) -> ChainTx:
        """Commits ``fields`` on the stored row of ``tx``; returns the updated row."""
        with self._write_lock, self.session() as session:
            row = session.get(ChainTx, tx.id)
            assert row is not None
            for name, value in fields.items():
                setattr(row, name, value)
            session.add(row)
            session.commit()
            return row

    def end(
        self,
        tx: ChainTx,
        state: TxState,
        error: str | None,
        mark: Callable[[list[Update]], None],
    ) -> list[Update] | None:
        """Moves ``tx`` to its end ``state`` (with ``error``, if any) and its updates as
        ``mark`` sets them, in one commit. Returns its updates, or None if it had ended
        already: a key's transactions may be ended by the key's own process and by another one
        finishing them for it at once, so the row is locked (PostgreSQL) and its state read
        again first; the end is written once."""
        assert tx.id is not None
        with self._write_lock, self.session() as session:
            row = session.get(ChainTx, tx.id, with_for_update=True, populate_existing=True)
            if row is None or row.state != TxState.UNCONFIRMED:
                return None
            updates = self.updates_of(session, tx.id)
            mark(updates)
            session.add_all(updates)
            row.state = state
            if error is not None:
                row.error = error
            session.add(row)
            session.commit()
        return updates

    def reopen_after(self, session: Session, fork_block: int) -> list[int]:
        """Reopens, inside ``session`` (the caller commits), the transactions (of every key:
        each process tracks its own again, a gone key's are finished by another) confirmed
        above ``fork_block``: unconfirmed again, their updates not applied. Returns their ids."""
        rows = list(
            session.exec(
                select(ChainTx).where(
                    col(ChainTx.state) == TxState.CONFIRMED,
                    col(ChainTx.mined_block) > fork_block,
                )
            ).all()
        )
        for row in rows:
            row.state = TxState.UNCONFIRMED
            session.add(row)
            for u in self.updates_of(session, cast(int, row.id)):
                u.applied, u.skip_reason = None, None
                session.add(u)
        if rows:
            log.warning(
                "reorg below block %d: %d confirmed txs reopened (nonces %s)",
                fork_block + 1,
                len(rows),
                [r.nonce for r in rows],
            )
        return [cast(int, r.id) for r in rows]

    # ------------------------------------------------------------------ other keys

    def orphaned_senders(self) -> list[str]:
        """The other keys with unconfirmed transactions whose process is gone: their operator
        lock is free (read in ``pg_locks``), sorted. Always empty on SQLite (one key)."""
        if not self.shared:
            return []
        with self.session() as session:
            senders = set(
                session.exec(
                    select(ChainTx.sender)
                    .where(
                        col(ChainTx.state) == TxState.UNCONFIRMED,
                        col(ChainTx.sender) != self._sender,
                    )
                    .distinct()
                ).all()
            )
        if not senders:
            return []
        with self._db.connect() as conn:
            return sorted(s for s in senders if not advisory_lock_held(conn, operator_key(s)))

    def unconfirmed_of(self, sender: str) -> list[ChainTx]:
        """Another key's unconfirmed transactions, lowest nonce first."""
        with self.session() as session:
            return list(
                session.exec(
                    select(ChainTx)
                    .where(
                        col(ChainTx.sender) == sender,
                        col(ChainTx.state) == TxState.UNCONFIRMED,
                    )
                    .order_by(col(ChainTx.nonce))
                ).all()
            )
