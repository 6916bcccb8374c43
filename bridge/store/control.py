"""What a database is for, and the operator's switches stored in it.

- **Binding.** A database serves one (chain id, contract): job ids are only unique per contract,
  so rows of two contracts in one database would be mixed (an old job taken for a reorged one,
  its outputs replaced). ``bind`` records the pair in the first start's transaction and refuses
  any later start configured for another pair, before a job is read or written. A database from
  before the binding existed is bound at its next start, unless its scan cursor names another
  contract.
- **Dispatch pause.** ``POST /admin/pause`` is a row, not a flag in memory: it survives restarts
  and every process on the database sees it.

Every function here runs its own short transaction; SQLAlchemy errors are left to the caller
(the loops back off on them, the start-up turns them into one line).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from web3 import Web3

from bridge.errors import DatabaseBound
from bridge.store.models import Binding, DispatchControl, ScanCursor, utcnow


@dataclass(frozen=True)
class Target:
    """A (chain id, contract) pair, as bound or as configured."""

    chain_id: int | None  # None: unknown (a database bound before chain ids were recorded)
    contract: str

    def __str__(self) -> str:
        chain = "an unknown chain" if self.chain_id is None else f"chain {self.chain_id}"
        return f"{chain}, contract {self.contract}"

    def matches(self, other: Target) -> bool:
        """Same contract (any case) and, where both are known, the same chain id."""
        if self.contract.lower() != other.contract.lower():
            return False
        return self.chain_id is None or other.chain_id is None or self.chain_id == other.chain_id


def bound_target(db: Engine) -> Target | None:
    """What the database is bound to: its binding row, else (a database from before bindings)
    the contract of its scan cursor with an unknown chain id, else None (never used)."""
    with Session(db) as session:
        row = session.get(Binding, 1)
        if row is not None:
            return Target(row.chain_id, row.contract)
        cursor = session.exec(select(ScanCursor).order_by(col(ScanCursor.contract))).first()
    return None if cursor is None else Target(None, Web3.to_checksum_address(cursor.contract))


def mismatch(db_shown: str, bound: Target, configured: Target) -> str:
    """The one line that refuses a start: names the database, both pairs, and what to do."""
    return (
        f"BRIDGE_DATABASE_URL: the database {db_shown} belongs to {bound}; this bridge is "
        f"configured for {configured}: give it a database of its own "
        "(one database per chain and contract)"
    )


def bind(db: Engine, chain_id: int, contract: str, *, db_shown: str) -> Target:
    """Binds the database to (``chain_id``, ``contract``) if it is not bound yet, and checks it.

    Args:
        db_shown: the database URL without its password, for the error line.

    Returns:
        The target the database is bound to (the configured one).

    Raises:
        DatabaseBound: the database belongs to another chain id or contract; nothing was
            written.
    """
    configured = Target(chain_id, Web3.to_checksum_address(contract))
    for _ in range(2):  # a second process may bind between our read and our insert
        bound = bound_target(db)
        if bound is not None and not bound.matches(configured):
            raise DatabaseBound(mismatch(db_shown, bound, configured))
        with Session(db) as session:
            if session.get(Binding, 1) is not None:
                return configured
            session.add(Binding(id=1, chain_id=chain_id, contract=configured.contract))
            try:
                session.commit()
            except IntegrityError:
                continue
            return configured
    raise DatabaseBound(f"BRIDGE_DATABASE_URL: the database {db_shown} could not be bound")


def dispatch_paused(db: Engine) -> bool:
    """Whether the operator paused dispatch (no row: not paused)."""
    with Session(db) as session:
        row = session.get(DispatchControl, 1)
        return bool(row is not None and row.paused)


def set_dispatch_paused(db: Engine, paused: bool) -> bool:
    """Stores the pause switch; returns whether it changed (it is idempotent)."""
    with Session(db) as session:
        row = session.get(DispatchControl, 1)
        if row is not None and row.paused == paused:
            return False
        if row is None:
            if not paused:
                return False
            row = DispatchControl(id=1, paused=True)
        row.paused, row.changed_at = paused, utcnow()
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # another process inserted the row meanwhile: set it again
            session.rollback()
            return set_dispatch_paused(db, paused)
        return True
