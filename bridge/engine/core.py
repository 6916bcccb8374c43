"""What the engine's roles share: the settings, the units of work, the ledger, the cancel
outbox, the clock and the stop signal (built once, before the writer, by ``Core.build``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from bridge.config import Settings
from bridge.engine.cancels import CancelOutbox
from bridge.engine.ledger import JobLedger
from bridge.remote.client import CEClient
from bridge.store.claims import WorkClaims
from bridge.store.uow import Store


@dataclass(frozen=True)
class Core:
    """The roles' shared parts. Built before the writer, so that the writer can report skipped
    updates to the ledger (``ledger.on_update_skipped``) without a reference back.

    Attributes:
        settings: the bridge's settings.
        store: the units of work (and the lock that orders job changes).
        cancels: the cancel outbox.
        ledger: applies the machine's decisions to stored jobs.
        clock: epoch seconds.
        stopping: set when the bridge stops: no role starts new work.
        claims: this process's claims on CE work (``FOR UPDATE SKIP LOCKED`` and a lease on
            PostgreSQL, where other processes work too; the due query alone on SQLite).
    """

    settings: Settings
    store: Store
    cancels: CancelOutbox
    ledger: JobLedger
    clock: Callable[[], float]
    stopping: threading.Event
    claims: WorkClaims

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Engine,
        ce: CEClient,
        chain_id: int,
        clock: Callable[[], float],
        *,
        holder: str,
    ) -> Core:
        """The shared parts over ``db`` and ``ce``; ``holder`` (the operator address) names
        this process's claims on CE work."""
        store = Store(db)
        stopping = threading.Event()
        claims = WorkClaims(db, holder, lease=settings.claim_lease, clock=clock)
        cancels = CancelOutbox(store, ce, clock=clock, stopping=stopping, claims=claims)
        ledger = JobLedger(
            store,
            cancels,
            chain_id=chain_id,
            settings=settings,
            clock=clock,
        )
        return cls(settings, store, cancels, ledger, clock, stopping, claims)
