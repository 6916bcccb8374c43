"""The scanner: the chain into the store, and the repair of reorganisations.

``Scanner.scan_once`` reads the escrow's logs up to ``head - confirmations`` (or the node's
``safe`` / ``finalized`` block: ``bridge.chain.finality``) in adaptive ranges,
checks the stored block hash under the cursor (a mismatch rewinds to the last block whose hash
still matches, reopens the writes confirmed above the fork and re-checks the jobs submitted
there), and stores new jobs, cancellation requests and on-chain settlements together with the
new cursor in ONE unit of work. A range's last block hash is read before and after its logs,
so both come from one chain. A round reads one range; when confirmed blocks remain above it
(``ScanReport.behind``: a start far behind the head, a node that was down, a dense stretch read
in small ranges), the bridge's scan loop runs the next round at once instead of waiting its
``BRIDGE_SCAN_INTERVAL``, so catching up takes the time of the reads and stores alone.

With several processes on one PostgreSQL database, one scans: the one that holds the scanner's
leadership (``bridge.store.locks``: an advisory lock; the others stand by and take over within
a scan interval of its end). A range is stored only if the cursor is still where the scan read
it (its row locked), so even a leader that lost its lock unnoticed cannot store a range twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, delete
from sqlalchemy import update as sql_update
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select
from web3 import Web3

from bridge.chain.finality import Finality, final_block
from bridge.chain.reader import (
    CancelRequestedLog,
    ChainLog,
    LogReader,
    RangeSizer,
    StatusLog,
    SubmittedLog,
    find_deployment_block,
    is_range_error,
)
from bridge.engine import machine as m
from bridge.engine.core import Core
from bridge.engine.states import JobState
from bridge.errors import RpcUnavailable
from bridge.store.locks import Leadership, SoleLeader
from bridge.store.models import Job, OutputFile, ScanCursor, SeenBlock, Update, utcnow
from bridge.store.uow import UnitOfWork

log = logging.getLogger("bridge.engine")


#: Blocks in the scanner's first ``eth_getLogs`` range (it doubles after each quiet range).
FIRST_RANGE = 4
#: A range with fewer logs than this doubles; one with more than ``BUSY_LOGS`` halves. A range's
#: logs are decoded and stored in one transaction, so ``BUSY_LOGS`` bounds the memory a dense
#: stretch of chain takes (10,000 jobs in 100 blocks: ranges of 1,000 logs peaked at ~164 MiB,
#: of 500 at ~141 MiB; bench/ingest.py, docs/BENCHMARKS.md section 6).
QUIET_LOGS = 200
BUSY_LOGS = 500


def range_sizer(max_range: int) -> RangeSizer:
    """The scanner's ``eth_getLogs`` range policy: ``FIRST_RANGE`` blocks first, doubling
    after ranges of fewer than ``QUIET_LOGS`` logs, halving after more than ``BUSY_LOGS``,
    never above ``max_range`` (``BRIDGE_MAX_BLOCK_RANGE``). The ingest benchmark reads with
    it too, so it measures the ranges the bridge reads."""
    return RangeSizer(
        max_range=max_range,
        size=min(max_range, FIRST_RANGE),
        quiet_logs=QUIET_LOGS,
        busy_logs=BUSY_LOGS,
    )


#: Job ids per preloading query (SQLite allows 32,766 bound parameters; PostgreSQL more).
_PRELOAD_CHUNK = 2000


@dataclass(frozen=True)
class ScanReport:
    """What one ``scan_once`` did."""

    from_block: int
    to_block: int
    logs: int
    rewound_to: int | None = None
    #: Confirmed blocks remain above ``to_block``: the next round can start at once.
    behind: bool = False


class Scanner:
    """Chain to store, with reorg repair (see the module).

    Args:
        core: the shared parts (settings: confirmations, start block, ranges, reorg depth).
        reader: the escrow's logs.
        w3: the node (to find the deployment block when no start block is set).
        reopen: the writer's ``reopen_after_reorg(session, fork_block)``: reopens the writes
            confirmed above a fork, inside the rewinding unit of work.
        leadership: whether this process scans now (always, alone on SQLite).
    """

    def __init__(
        self,
        core: Core,
        *,
        reader: LogReader,
        w3: Web3,
        reopen: Callable[[Session, int], object],
        leadership: Leadership | None = None,
    ) -> None:
        self.leadership: Leadership = leadership or SoleLeader()
        self._core = core
        self._reader = reader
        self._w3 = w3
        self._reopen = reopen
        self._contract = core.settings.contract_address
        # The first range is small and grows while quiet: a start far behind a dense chain
        # must not read thousands of blocks' logs in one answer (the memory peak).
        self._sizer = range_sizer(core.settings.max_block_range)
        self.finality = Finality.of(core.settings.confirmations)

    def start_block(self) -> int:
        """The first block to scan: ``BRIDGE_START_BLOCK``, else the escrow's deployment."""
        if self._core.settings.start_block is not None:
            return self._core.settings.start_block
        return find_deployment_block(self._w3, Web3.to_checksum_address(self._contract))

    def cursor(self) -> int:
        """The last block scanned."""
        with Session(self._core.store.db) as session:
            cursor = session.get(ScanCursor, self._contract)
            return cursor.block if cursor else self.start_block() - 1

    def target(self, head: int) -> int:
        """The last block to read at ``head``: ``head - N``, or the node's safe/finalized block
        (``BRIDGE_CONFIRMATIONS``). Above it nothing is read, so the reorg checks only ever see
        blocks at or below it."""
        return final_block(self._w3, self.finality, head)

    def view_current(self) -> bool:
        """Whether the block at the scan cursor still has the hash the scanner stored."""
        with Session(self._core.store.db) as session:
            cursor = session.get(ScanCursor, self._contract)
            seen = (
                None if cursor is None else session.get(SeenBlock, (self._contract, cursor.block))
            )
        if seen is None:
            return True
        return self._reader.block_hash(seen.number) == seen.hash

    def scan_once(self) -> ScanReport | None:
        """Scans the next range of confirmed blocks, if this process leads the scan. Returns
        None when there was nothing to do (or another process scans)."""
        if not self.leadership.held():
            return None
        head = self._reader.head()
        safe = self.target(head)
        last = self.cursor()
        rewound = self._check_reorg(last)
        if rewound is not None:
            last = rewound
        if last >= safe:
            return None if rewound is None else ScanReport(last, last, 0, rewound)
        while True:
            to_block = min(safe, last + self._sizer.size)
            to_hash = self._reader.block_hash(to_block)
            if to_hash is None:
                return None  # the chain got shorter under us: try again next round
            try:
                logs = self._reader.fetch(last + 1, to_block)
                break
            except RpcUnavailable as exc:
                if is_range_error(exc) and self._sizer.shrink():
                    continue
                raise
        self._sizer.record(len(logs))
        # The logs and the hash stored for to_block must come from the same chain: a reorg
        # between the two reads would store old-chain jobs under a new-chain hash, and the
        # next round's check could not see it. Read the hash again; on a change, start over.
        if self._reader.block_hash(to_block) != to_hash or any(
            e.at.block_number == to_block and e.at.block_hash != to_hash for e in logs
        ):
            log.warning("the chain changed while blocks %d..%d were read", last + 1, to_block)
            return None
        actions = self._store_scan(last, to_block, to_hash, logs)
        self._core.cancels.run_actions(actions)
        return ScanReport(last + 1, to_block, len(logs), rewound, behind=to_block < safe)

    def _check_reorg(self, cursor_block: int) -> int | None:
        """Returns the block to rewind the cursor to, or None when the chain under it is intact."""
        newest_first = (
            select(SeenBlock)
            .where(SeenBlock.contract == self._contract)
            .order_by(col(SeenBlock.number).desc())
        )
        # Each round: the newest stored block only (the cursor's); all of them after a reorg.
        with Session(self._core.store.db) as session:
            newest = session.exec(newest_first.limit(1)).first()
        if newest is None or newest.number != cursor_block:
            return None
        if self._reader.block_hash(newest.number) == newest.hash:
            return None
        with Session(self._core.store.db) as session:
            seen = session.exec(newest_first).all()
        if not seen or seen[0].number != cursor_block:
            return None  # rewound meanwhile by another process: the next round sees it
        fork = seen[-1].number - 1
        for block in seen[1:]:
            if self._reader.block_hash(block.number) == block.hash:
                fork = block.number
                break
        log.warning("reorg below block %d: rewinding the scan to block %d", cursor_block, fork)
        with self._core.store.begin() as uow:
            session = uow.session
            session.exec(
                delete(SeenBlock).where(
                    col(SeenBlock.contract) == self._contract, col(SeenBlock.number) > fork
                )
            )
            # Our writes confirmed above the fork may be gone: tracked again, re-sent if so.
            self._reopen(session, fork)
            session.flush()
            # Every job submitted above the fork must be seen again, the same submission,
            # before the re-scan passes the old cursor (_store_scan); meanwhile it is not
            # dispatched and none of its writes is sent.
            suspects = list(
                session.exec(
                    select(Job).where(
                        col(Job.block_number) > fork, col(Job.state) != JobState.ORPHANED
                    )
                ).all()
            )
            for job in suspects:
                job.recheck_until = max(job.recheck_until or 0, cursor_block)
                session.add(job)
            if suspects:
                session.exec(
                    sql_update(Update)
                    .where(
                        col(Update.job_id).in_([j.job_id for j in suspects]),
                        col(Update.applied).is_(None),
                    )
                    .values(held=True)
                )
                log.warning(
                    "jobs %s were submitted above the fork: re-checking them",
                    [j.job_id for j in suspects],
                )
            cursor = session.get(ScanCursor, self._contract)
            if cursor is not None:
                cursor.block = fork
                session.add(cursor)
            uow.commit()
        return fork

    def _store_scan(
        self, last: int, to_block: int, to_hash: str, logs: list[ChainLog]
    ) -> list[tuple[int, m.Decision]]:
        actions: list[tuple[int, m.Decision]] = []
        with self._core.store.begin() as uow:
            session = uow.session
            # The cursor's row first, locked: a scanner that lost its lead unnoticed (its lock's
            # connection gone) cannot store a range another one has stored meanwhile.
            cursor = session.get(ScanCursor, self._contract, with_for_update=True)
            if cursor is not None and cursor.block != last:
                log.warning(
                    "the scan cursor moved to block %d under this scanner (at %d): another "
                    "process scans; this range is dropped",
                    cursor.block,
                    last,
                )
                return []
            # The range's stored jobs in one query per chunk (not one per log, each flushing the
            # jobs added so far), their rows locked for this transaction as a worker's change
            # locks them: ``known`` holds them and the jobs this range adds, which go to the
            # database in one batch at the commit.
            # A status that is not terminal (the bridge's own Accepted/Running writes, most of
            # a busy range's logs) only raises the job's ``onchain_status``: one UPDATE for all
            # of them below, no row loaded. The rows loaded leave the spec out (the largest
            # column; read only if a change needs it).
            raised: dict[int, int] = {}
            ids = sorted(
                {
                    entry.job_id
                    for entry in logs
                    if not (isinstance(entry, StatusLog) and not entry.status.is_terminal)
                }
            )
            known: dict[int, Job] = {}
            for start in range(0, len(ids), _PRELOAD_CHUNK):
                chunk = ids[start : start + _PRELOAD_CHUNK]
                query = (
                    select(Job)
                    .where(col(Job.job_id).in_(chunk))
                    .options(defer(Job.spec_abi))  # type: ignore[arg-type]
                    .with_for_update()
                )
                for row in session.exec(query).all():
                    known[row.job_id] = row
            for entry in logs:
                if isinstance(entry, StatusLog) and not entry.status.is_terminal:
                    status = int(entry.status)
                    raised[entry.job_id] = max(raised.get(entry.job_id, 0), status)
                    continue
                if isinstance(entry, SubmittedLog):
                    stored = self._store_submission(uow, entry, known)
                    if stored is not None and stored[1].actions:
                        actions.append(stored)
                    continue
                job = known.get(entry.job_id)
                if job is None:
                    continue  # a job from before our start block
                if isinstance(entry, CancelRequestedLog):
                    event: m.Event = m.CancelRequestedSeen()
                elif isinstance(entry, StatusLog):
                    job.onchain_status = max(job.onchain_status, int(entry.status))
                    session.add(job)
                    if not entry.status.is_terminal:
                        continue
                    event = m.SettledOnChain(entry.status)
                decision = self._core.ledger.apply(uow, job, event)
                if decision is not None and decision.actions:
                    actions.append((job.job_id, decision))
            self._raise_statuses(session, raised, known)
            # The re-scan passed the old cursor: a job not seen again has no submission now.
            for job in session.exec(
                select(Job).where(
                    col(Job.recheck_until).is_not(None), col(Job.recheck_until) <= to_block
                )
            ).all():
                decision = self._core.ledger.orphan(uow, job)
                if decision is not None and decision.actions:
                    actions.append((job.job_id, decision))
            cursor = cursor or ScanCursor(contract=self._contract, block=to_block)
            cursor.block = to_block
            cursor.updated_at = utcnow()
            session.add(cursor)
            session.merge(SeenBlock(contract=self._contract, number=to_block, hash=to_hash))
            session.exec(
                delete(SeenBlock).where(
                    col(SeenBlock.contract) == self._contract,
                    col(SeenBlock.number) < to_block - self._core.settings.reorg_depth,
                )
            )
            uow.commit()
        if logs:
            log.info("scanned blocks %d..%d: %d events", last + 1, to_block, len(logs))
        return actions

    @staticmethod
    def _raise_statuses(session: Session, raised: dict[int, int], known: dict[int, Job]) -> None:
        """Raises each job's ``onchain_status`` to the non-terminal status seen (never lowers
        it): through its loaded row when the range loaded it, else in one UPDATE for all
        (a job from before the start block has no row: nothing to update)."""
        rows = []
        for job_id, status in sorted(raised.items()):  # rows locked in id order, as elsewhere
            job = known.get(job_id)
            if job is None:
                rows.append({"job": job_id, "status": status})
            elif status > job.onchain_status:
                job.onchain_status = status
                session.add(job)
        if rows:
            table = Job.__table__  # type: ignore[attr-defined]
            session.connection().execute(
                sql_update(table)
                .where(
                    table.c.job_id == bindparam("job"), table.c.onchain_status < bindparam("status")
                )
                .values(onchain_status=bindparam("status")),
                rows,
            )

    def _store_submission(
        self, uow: UnitOfWork, entry: SubmittedLog, known: dict[int, Job]
    ) -> tuple[int, m.Decision] | None:
        """Stores a new job, or matches a known one; returns a decision whose actions to run.

        ``known``: the stored jobs of the range's ids (and those added since); a new job is
        added to it."""
        session = uow.session
        existing = known.get(entry.job_id)
        at = entry.at
        generation = 0
        decision = None
        if existing is not None:
            same = (
                existing.tx_hash.lower() == at.tx_hash.lower()
                and existing.spec_hash == "0x" + entry.spec_hash.hex()
                and existing.state != JobState.ORPHANED
            )
            if same:
                # The same submission, seen again after a rewind (perhaps in another block):
                # keep the bridge's progress, refresh the position, release held writes.
                existing.block_number, existing.block_hash = at.block_number, at.block_hash
                existing.tx_hash, existing.log_index = at.tx_hash, at.log_index
                if existing.recheck_until is not None:
                    existing.recheck_until = None
                    self._core.ledger.hold_updates(session, existing.job_id, held=False)
                    log.info("job %d: submission seen again after the reorg", existing.job_id)
                session.add(existing)
                return None
            # A different submission got this job id after a reorg: the old one is orphaned
            # (its remote job cancelled, its writes dropped) and the new one starts afresh
            # under the next generation of the id, so it gets its own remote job.
            decision = self._core.ledger.orphan(uow, existing)
            generation = existing.generation + 1
            session.exec(delete(OutputFile).where(col(OutputFile.job_id) == existing.job_id))
            session.delete(existing)
            session.flush()
            log.warning(
                "job %d: id reused by another submission (tx %s) after a reorg: generation %d",
                entry.job_id,
                at.tx_hash,
                generation,
                extra={"job_id": entry.job_id, "tx_hash": at.tx_hash},
            )
        job = Job(
            job_id=entry.job_id,
            requester=entry.requester,
            spec_abi=entry.spec_abi,
            spec_hash="0x" + entry.spec_hash.hex(),
            payment_wei=str(entry.payment),
            deadline=entry.deadline,
            block_number=at.block_number,
            block_hash=at.block_hash,
            tx_hash=at.tx_hash,
            log_index=at.log_index,
            callback_gas_limit=entry.callback_gas_limit,
            generation=generation,
        )
        session.add(job)
        known[entry.job_id] = job
        log.info(
            "job %d: submitted by %s in block %d, tx %s",
            entry.job_id,
            entry.requester,
            at.block_number,
            at.tx_hash,
            extra={"job_id": entry.job_id, "tx_hash": at.tx_hash},
        )
        return None if decision is None else (entry.job_id, decision)
