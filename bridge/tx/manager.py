"""The durable transaction manager of one operator key (after Chainlink's txmgr broadcaster).

Three parts, as Chainlink's txmgr: ``bridge.tx.plan`` decides (pure: what next with each
stored transaction, and whether and what to batch), ``bridge.tx.policy`` holds the fee and gas
rules (pure), and this module is the I/O shell that gathers the facts from the node, does what
the plan says and stores it through ``bridge.tx.txstore.TxStore`` (the key's rows).

``TxManager.tick()`` turns queued ``applyUpdates`` items (``update_outbox`` rows with no
``tx_id``) into transactions, and drives every transaction of its key to an end state:

    update_outbox (tx_id NULL)
        │ batch (≤ batch_size, oldest first) → simulate (eth_call, eth_estimateGas)
        │   reverts → updates stay queued, error logged (an alert for a missing OPERATOR_ROLE)
        ▼ nonce, fees, sign; ONE database transaction: chain_tx row + tx_id on its updates
    unconfirmed ── broadcast the stored bytes ──► receipts ──► confirmed (updates applied / skipped)
        │  stuck → replacement (same nonce, bumped fees), stored before it is sent
        │  reorged out → the stored bytes are sent again
        └► fatal_error (reverted on-chain, or the nonce was taken by another transaction):
           its updates are released (tx_id NULL) and go into a new batch with a fresh nonce

Persisted states (``bridge.store.models.TxState``): ``unconfirmed → confirmed | fatal_error``.
There is no ``in_progress`` row: choosing the batch, the nonce and the fees and signing happen in
memory, and the signed transaction and the assignment of its updates are committed together, so
a crash before that commit leaves the updates queued and nothing signed, and a crash after it
leaves a stored transaction that is sent (again) on the next tick.

Guarantees:

- Every transaction is signed and stored, with its updates assigned to it, before it is
  broadcast; a replacement is stored (its hash appended to ``hashes``) before it is broadcast.
- An update is in at most one non-fatal transaction. After a crash, restart or reorg the *same*
  stored bytes are re-sent; a new nonce is used for an update only once its old transaction is
  ``fatal_error`` (its nonce used by another transaction, or reverted with N confirmations).
- At most ``max_inflight`` transactions are sent and not mined, and no more than the key's
  balance pays for at their gas limits and max fees with a fee bump of each
  (``plan.may_fund``): a key short of funds waits for mined ones instead of being refused.
- Nonces come from the database (highest stored + 1), raised to the chain's count at ``latest``
  when someone else used the key, so there are no gaps and no reuse of a live nonce.
- Before signing, the batch is simulated with ``eth_call`` and ``eth_estimateGas``; a revert is
  decoded to the contract's custom error and the batch is not sent.
- Send errors are classified (``bridge.tx.policy.classify_send_error``): already known (fine),
  nonce too low (mined by us, or taken by another transaction → fatal), underpriced (bump on the
  next tick), insufficient funds (one error line, then ``InsufficientFunds`` is raised for the
  caller to alert and back off), anything else retryable (the stored transaction is kept and
  sent again on the next tick).
- A transaction is ``confirmed`` once its block is ``confirmations`` deep and still canonical;
  only then are its updates marked applied, or skipped with the name of the ``UpdateSkipped``
  error.
- A reorg deeper than the confirmations, reported by the scanner (``reopen_after_reorg``),
  reopens the transactions confirmed above the fork: each is confirmed again if the new chain
  holds it, else its stored bytes are sent again. An update held by the engine (its job's
  submission is being re-checked after a reorg) is neither batched nor sent; one it dropped
  (the submission vanished) is taken out of its transaction by a same-nonce rebuild, so a
  write meant for a vanished job never lands on a job that reuses its id.
- The private key and the signed bytes are never logged; messages carry the tx hash, the nonce
  and the job ids.

One ``TxManager`` per key and process: ``tick`` takes a lock, so threads may share an instance,
but two processes must not drive the same key at once (the caller holds a lease for that; a
second writer is detected by the ``(sender, nonce)`` unique constraint and backs off).

Several keys on one PostgreSQL database (one process each):

- Each writer batches any queued update, whoever's job it is. An update is claimed by exactly
  one writer: its row is locked (``FOR UPDATE SKIP LOCKED``: other writers skip it) from its
  selection until the signed transaction and its ``tx_id`` are committed together. There is no
  "claimed but not signed" state on disk: a writer that dies before that commit holds nothing
  (its transaction is rolled back with its connection) and the update is batched by the next.
- A writer that dies after the commit leaves signed transactions of its key. The key's process
  finishes them when it comes back; while it stays away (its operator lock free for
  ``adopt_after`` s) any other writer finishes them as far as no key is needed: it re-sends the
  stored bytes, confirms them, or marks them fatal and releases their updates
  (``_finish_orphaned``). A fee bump of such a transaction waits for its key.
- The end state of a transaction is written under its row's lock, once (``TxStore.end``),
  whichever process gets there first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

import rlp  # type: ignore[import-untyped]  # pyrlp ships no types
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from web3 import Web3
from web3._utils.method_formatters import receipt_formatter
from web3.contract import Contract
from web3.datastructures import AttributeDict
from web3.exceptions import (
    ContractLogicError,
    Web3Exception,
    Web3RPCError,
)
from web3.types import LogReceipt, TxParams, TxReceipt, Wei

from bridge.chain import rpc
from bridge.chain.finality import FinalityTag, tagged_block
from bridge.chain.revert import decode_revert, error_name, revert_data
from bridge.errors import (
    BridgeError,
    ContractRevert,
    InsufficientFunds,
    RpcUnavailable,
    StoreError,
)
from bridge.store.models import ChainTx, TxState, Update
from bridge.tx import plan
from bridge.tx.fees import FeeOracle
from bridge.tx.policy import (
    DEFAULT_MAX_BATCH_GAS,
    Fees,
    SendOutcome,
    apply_updates_calldata,
    batch_gas,
    bumped_fees,
    classify_send_error,
    gas_limit_for,
    write_cost,
)
from bridge.tx.txstore import TxStore

log = logging.getLogger("bridge.tx")

#: ``ChainTx.error`` of a transaction whose nonce another transaction used.
NONCE_TAKEN = "nonce taken by another transaction"
#: ``ChainTx.error`` of a transaction mined with status 0.
REVERTED = "reverted on-chain"
#: ``Update.skip_reason`` of an update whose transaction reverted with it alone: held.
REVERTED_ALONE = "RevertedAlone"
_ACCESS_DENIED = "AccessControlUnauthorizedAccount"
_MAX_NODE_MESSAGE = 200


@dataclass(frozen=True)
class TickReport:
    """What one ``TxManager.tick`` did, for metrics.

    Attributes:
        sent: transactions broadcast: new batches, and stored ones sent again after a restart,
            a failed send or a reorg.
        confirmed: transactions that reached the required confirmations.
        replaced: fee-bumped replacements of stuck transactions.
        failed: transactions marked ``fatal_error`` plus batches whose simulation reverted.
        waiting: updates still without a transaction after this round.
        inflight: transactions still unconfirmed after this round.
    """

    sent: int
    confirmed: int
    replaced: int
    failed: int
    waiting: int
    inflight: int


class _Sent(Enum):
    """What became of one broadcast."""

    OK = "ok"  # the node has the transaction (or it is already mined)
    FATAL = "fatal"  # its nonce was taken: marked fatal, updates released
    KEPT = "kept"  # not accepted now; the stored transaction is tried again later


@dataclass
class _Budget:
    """The key's funds in one round of ``_send_new``: its transactions sent and not mined,
    the most they may cost together, and its balance (read when first needed)."""

    unmined: int
    committed: int
    balance: int | None = None
    refused: bool = False  # a batch waited for funds this round


@dataclass
class _Counts:
    sent: int = 0
    confirmed: int = 0
    replaced: int = 0
    failed: int = 0


def _hashes(tx: ChainTx) -> list[str]:
    return [h for h in tx.hashes.split(",") if h]


def _job_ids(updates: Sequence[Update]) -> list[int]:
    return [u.job_id for u in updates]


def _log_ended(level: int, tx: ChainTx, outcome: str, *args: object, jobs: list[int]) -> None:
    """Logs that ``tx`` ended: ``tx <hash> nonce <n> <outcome % args>; jobs <jobs>``."""
    log.log(
        level,
        "tx %s nonce %d " + outcome + "; jobs %s",
        tx.tx_hash,
        tx.nonce,
        *args,
        jobs,
        extra={"tx_hash": tx.tx_hash, "job_ids": jobs},
    )


def _node_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response
    if isinstance(response, Mapping):
        error = response.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])[:_MAX_NODE_MESSAGE]
    return str(exc.message or exc)[:_MAX_NODE_MESSAGE]


def _calldata(updates: Sequence[Update]) -> HexBytes:
    """The ``applyUpdates`` transaction data carrying ``updates``, in their order."""
    return HexBytes(
        apply_updates_calldata(
            [
                (u.job_id, u.status, bytes(HexBytes(u.result_hash)).rjust(32, b"\0"), u.data)
                for u in updates
            ]
        )
    )


def _receipt(raw: Mapping[str, Any], topic: str) -> TxReceipt:
    """A receipt as the node sent it, formatted as web3's ``get_transaction_receipt`` returns
    it (web3's own receipt formatter, then its ``AttributeDict``), but with only the logs whose
    first topic is ``topic`` (hex text): a batch's receipt holds two or three logs an update,
    and formatting each (a checksum of its address, every topic) cost more than the rest of the
    receipt's handling, for logs the manager never reads."""
    logs = raw.get("logs")
    if isinstance(logs, list):
        wanted = topic.lower()
        kept = [e for e in logs if _first_topic(e) == wanted]
        raw = {**raw, "logs": kept}
    return cast(TxReceipt, AttributeDict.recursive(receipt_formatter(raw)))


def _first_topic(entry: object) -> str | None:
    """A raw log's first topic in lower case, or None (a log without topics, or malformed)."""
    topics = entry.get("topics") if isinstance(entry, dict) else None
    if not isinstance(topics, list) or not topics or not isinstance(topics[0], str):
        return None
    return topics[0].lower()


def _tx_data(raw_tx: str) -> HexBytes:
    """The call data of a signed transaction: typed (EIP-2718) or legacy (an RLP list)."""
    blob = HexBytes(raw_tx)
    if blob[0] >= 0xC0:
        return HexBytes(rlp.decode(bytes(blob))[5])
    return HexBytes(TypedTransaction.from_bytes(blob).as_dict()["data"])


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class TxManager:
    """Sends the queued ``applyUpdates`` items of one operator key, durably (see the module).

    Args:
        w3: a web3 client for the chain (no signing middleware needed; the manager signs).
        db: the bridge's database (``bridge.store.db.open_database``).
        account: the operator key; used to sign, never logged.
        escrow: the JobEscrow contract (its ABI decodes custom errors and ``UpdateSkipped``).
        confirmations: blocks on top of a transaction's block before it counts as confirmed.
        batch_size: most updates in one ``applyUpdates``.
        batch_wait: seconds to let updates gather: a partial batch is sent once its oldest
            update is this old (``Update.created_at`` against ``clock``); 0 sends at once.
        stuck_after: seconds after its broadcast with no receipt before a transaction is
            replaced with higher fees.
        fee_bump_percent: fee raise of a replacement (at least the 10% nodes require).
        max_fee_wei: cap of ``maxFeePerGas`` for any attempt.
        max_inflight: most transactions sent and not yet mined at once (16, as Chainlink's
            txmgr and geth's per-account pool slots); new batches wait beyond that (mined ones
            waiting for their confirmations do not count), and beyond what the key's balance
            pays for at their worst case (``plan.may_fund``).
        clock: epoch seconds (injectable for tests).
        on_skipped: called as ``on_skipped(job_id, status, error_name)`` for each update the
            contract skipped, after the confirmation is committed.
        revert_backoff: seconds before a batch whose simulation reverted is simulated again.
        max_batch_gas: most gas one batch is sized for (``batch_gas``); a batch is cut before
            the update that would pass it.
        adopt_after: seconds another key's process must be gone (its operator lock free, on
            PostgreSQL) before this writer finishes that key's stored transactions.
        adopt_check_every: seconds between two looks for such keys.
        write_lock: on SQLite, the lock the process's other writers hold around theirs (the
            store's): the writer's commits queue on it instead of on SQLite's file lock.
    """

    def __init__(
        self,
        w3: Web3,
        db: Engine,
        account: LocalAccount,
        escrow: Contract,
        *,
        confirmations: int,
        batch_size: int = 50,
        batch_wait: float = 0.0,
        stuck_after: float = 30.0,
        fee_bump_percent: int = 25,
        max_fee_wei: int = 500 * 10**9,
        max_inflight: int = 16,
        clock: Callable[[], float] = time.time,
        on_skipped: Callable[[int, int, str], None] | None = None,
        revert_backoff: float = 10.0,
        max_batch_gas: int = DEFAULT_MAX_BATCH_GAS,
        adopt_after: float = 60.0,
        adopt_check_every: float = 2.0,
        fees: FeeOracle | None = None,
        finality_tag: FinalityTag | None = None,
        write_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        if batch_size < 1 or max_inflight < 1 or confirmations < 0:
            raise ValueError("batch_size and max_inflight must be >= 1, confirmations >= 0")
        self._w3 = w3
        self._db = db
        self._account = account
        self._escrow = escrow
        self._abi: list[dict[str, Any]] = list(cast(Sequence[dict[str, Any]], escrow.abi))
        self._sender: ChecksumAddress = Web3.to_checksum_address(account.address)
        self._store = TxStore(db, self._sender, write_lock)
        self._confirmations = confirmations
        self._batch_size = batch_size
        self._batch_wait = batch_wait
        self._stuck_after = stuck_after
        self._bump_percent = fee_bump_percent
        self._max_fee = max_fee_wei
        self._max_inflight = max_inflight
        self._clock = clock
        self._on_skipped = on_skipped
        self._revert_backoff = revert_backoff
        self._max_batch_gas = max_batch_gas
        self._fees = fees or FeeOracle(w3, max_fee_wei=max_fee_wei)
        self._finality_tag = finality_tag
        self._skipped_topic = HexBytes(Web3.keccak(text="UpdateSkipped(uint256,uint8,bytes4)"))
        self._escrow_lower = str(self._escrow.address).lower()
        self._skipped_topic_hex = self._skipped_topic.to_0x_hex()
        self._lock = threading.Lock()
        self._chain_id: int | None = None
        # In memory only (lost on restart, which is what re-sends every stored transaction):
        self._sent: set[int] = set()  # tx ids whose current bytes the node accepted this run
        self._bump_now: set[int] = set()  # tx ids a node called underpriced
        self._capped: set[int] = set()  # tx ids stuck at the fee cap (warned once)
        self._simulate_after = 0.0  # clock time before which a reverting batch is not retried
        self._short_of_funds = False  # new batches wait for funds (warned once a backlog)
        self._l1_fees: dict[int, int] = {}  # tx id -> L1 fee of its bytes (OP-stack chains)
        # Other keys whose process is gone (``_finish_orphaned``): monotonic time each was
        # first seen without its lock; the ones whose transactions this writer finishes.
        self._adopt_after = adopt_after
        self._adopt_check_every = adopt_check_every
        self._orphans_checked = float("-inf")
        self._orphaned_since: dict[str, float] = {}
        self._adopted: set[str] = set()

    @property
    def sender(self) -> ChecksumAddress:
        """The operator address this manager sends from."""
        return self._sender

    @property
    def max_inflight(self) -> int:
        """Most of this key's transactions sent and not yet mined at once
        (``BRIDGE_MAX_INFLIGHT``); a new batch waits while that many are."""
        return self._max_inflight

    # ------------------------------------------------------------------ the round

    def tick(self) -> TickReport:
        """One round: track every unconfirmed transaction, then send new batches.

        Steps: (1) for each unconfirmed transaction, oldest nonce first: record its receipt,
        confirm it (or fail it, if it reverted) once deep enough, or detect a reorg; without a
        receipt: detect a nonce taken by another transaction, else replace it if a node called
        it underpriced, else send its stored bytes if this process has not had them accepted
        yet, else replace it if stuck; (2) while fewer than ``max_inflight`` are unconfirmed,
        batch queued updates into a new transaction.

        Never sleeps; safe to call repeatedly from a loop.

        Returns:
            Counts of what happened, for metrics.

        Raises:
            InsufficientFunds: the operator account cannot pay for gas (logged once as an
                error naming the address and balance); back off and alert.
            RpcUnavailable: the node could not be reached or answered unexpectedly.
            StoreError: the database failed.
        """
        with self._lock:
            counts = _Counts()
            try:
                self._track(counts)
                self._finish_orphaned(counts)
                self._send_new(counts)
                waiting, inflight = self._store.backlog()
            except BridgeError:
                raise
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"transaction manager database error: {exc.__class__.__name__}"
                ) from exc
            except (Web3Exception, OSError) as exc:
                # The message may carry the RPC URL (with an API key): name the class only.
                raise RpcUnavailable(
                    f"node error in the transaction manager: {exc.__class__.__name__}"
                ) from exc
            return TickReport(
                sent=counts.sent,
                confirmed=counts.confirmed,
                replaced=counts.replaced,
                failed=counts.failed,
                waiting=waiting,
                inflight=inflight,
            )

    # ------------------------------------------------------------------ step 1: tracking

    def _track(self, counts: _Counts) -> None:
        txs = self._store.unconfirmed()
        if not txs:
            return
        head = int(rpc.read(self._w3, "eth_blockNumber", []), 16)
        if self._finality_tag is not None:
            # Confirmed once the node's safe/finalized block reaches the tx's block (+ N).
            head = min(head, tagged_block(self._w3, self._finality_tag) or -1)
        chain_nonce = self._chain_nonce()
        receipts = self._find_receipts(txs)
        for tx, receipt in zip(txs, receipts, strict=True):
            self._track_one(tx, head, chain_nonce, counts, receipt)

    def _track_one(
        self,
        tx: ChainTx,
        head: int,
        chain_nonce: int,
        counts: _Counts,
        receipt: TxReceipt | None,
    ) -> None:
        """Gathers the facts of ``tx`` (``receipt``: its receipt read this round, if it was
        mined) and does what ``bridge.tx.plan`` answers."""
        assert tx.id is not None
        if receipt is not None:
            tx = self._record_mined(tx, receipt)
            assert tx.mined_block is not None
            mined_block, succeeded = tx.mined_block, int(receipt["status"]) == 1
            step = plan.plan_mined(
                head=head,
                mined_block=mined_block,
                confirmations=self._confirmations,
                succeeded=succeeded,
            )
            if step.action is plan.TxAction.CHECK_CANONICAL:
                step = plan.plan_mined(
                    head=head,
                    mined_block=mined_block,
                    confirmations=self._confirmations,
                    succeeded=succeeded,
                    canonical=self._is_canonical(mined_block, tx.mined_block_hash),
                )
        else:
            step = plan.plan_unmined(
                was_mined=tx.mined_block is not None, nonce=tx.nonce, chain_nonce=chain_nonce
            )
        match step.action:
            case plan.TxAction.WAIT:
                return
            case plan.TxAction.RESEND_REORGED:
                sendable = self._sendable(self._unmine(tx, step.reason), counts)
                if sendable is not None and self._broadcast(sendable, counts) is _Sent.OK:
                    counts.sent += 1
                return
            case plan.TxAction.CONFIRM:
                assert receipt is not None
                self._confirm(tx, receipt)
                counts.confirmed += 1
                return
            case plan.TxAction.SPLIT_REVERTED:
                self._split_reverted(tx)
                counts.failed += 1
                return
            case plan.TxAction.NONCE_USED:
                # Not by one of our hashes (no receipt above), unless it was mined between the
                # two queries: look once more before calling it foreign.
                if self._find_receipt(tx) is None:
                    self._fail(tx, NONCE_TAKEN)
                    counts.failed += 1
                return
        sendable = self._sendable(tx, counts)
        if sendable is None:
            return
        tx = sendable
        assert tx.id is not None
        step = plan.plan_send(
            bump_requested=tx.id in self._bump_now,
            sent_this_run=tx.id in self._sent,
            broadcast_at=tx.broadcast_at,
            now=self._clock(),
            stuck_after=self._stuck_after,
        )
        if step.action is plan.TxAction.BUMP:
            self._replace(tx, counts)
        elif step.action is plan.TxAction.SEND and self._broadcast(tx, counts) is _Sent.OK:
            # Never accepted by the node in this run (new process, failed send): same bytes.
            counts.sent += 1

    def _sendable(self, tx: ChainTx, counts: _Counts) -> ChainTx | None:
        """``tx`` (not mined) as it may be (re)sent now, or None while it must wait.

        If the engine dropped one of its updates (its job's submission vanished in a reorg),
        the transaction is first rebuilt without it (same nonce, higher fees, so that it also
        replaces the old bytes in any mempool). It waits while one of its updates is held:
        its job's submission is being re-checked after a reorg.
        """
        assert tx.id is not None
        with self._store.session() as session:
            updates = self._store.updates_of(session, tx.id)
        keep = [u for u in updates if u.applied is not False]
        if len(keep) < len(updates):
            tx = self._rebuild(tx, keep, counts)
        return None if any(u.held for u in keep) else tx

    def _rebuild(self, tx: ChainTx, keep: list[Update], counts: _Counts) -> ChainTx:
        """Re-signs ``tx`` (same nonce) with only the updates ``keep``; the others leave it.

        With nothing to keep, the transaction becomes an empty ``applyUpdates``: the nonce is
        used up either way, so no later transaction waits on a gap.
        """
        assert tx.id is not None
        data = _calldata(keep)
        old = Fees(tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
        fees = bumped_fees(old, self._market_fees(), self._bump_percent, self._max_fee) or old
        raw, tx_hash = self._sign(tx.nonce, data, tx.gas_limit, fees)
        kept = {cast(int, u.id) for u in keep}
        with self._store.writing(), self._store.session() as session:
            row = session.get(ChainTx, tx.id)
            assert row is not None
            dropped = []
            for u in self._store.updates_of(session, tx.id):
                if u.id not in kept:
                    u.tx_id = None
                    session.add(u)
                    dropped.append(u.job_id)
            row.raw_tx, row.tx_hash = raw, tx_hash
            row.hashes = ",".join([*_hashes(tx), tx_hash])
            row.attempt = tx.attempt + 1
            row.max_fee_per_gas = fees.max_fee_per_gas
            row.max_priority_fee_per_gas = fees.max_priority_fee_per_gas
            row.mined_block, row.mined_block_hash, row.broadcast_at = None, None, None
            session.add(row)
            session.commit()
        self._sent.discard(tx.id)
        counts.replaced += 1
        log.warning(
            "tx %s nonce %d rebuilt as %s without the dropped updates of jobs %s "
            "(their submissions vanished in a reorg); %d updates kept",
            tx.tx_hash,
            tx.nonce,
            tx_hash,
            dropped,
            len(keep),
            extra={"tx_hash": tx_hash, "job_ids": dropped},
        )
        return row

    def reopen_after_reorg(self, session: Session, fork_block: int) -> list[int]:
        """Reopens this key's transactions confirmed in a block above ``fork_block``.

        Called by the scanner, in the transaction that rewinds it, when a reorg deeper than the
        confirmations replaced blocks above ``fork_block``: a confirmed write there may be gone.
        Each reopened transaction is tracked again: confirmed anew if the new chain holds it,
        otherwise its stored bytes are sent again. The caller commits.

        Returns:
            The ids of the reopened transactions.
        """
        return self._store.reopen_after(session, fork_block)

    def _find_receipt(self, tx: ChainTx) -> TxReceipt | None:
        """The receipt of whichever of the transaction's hashes was mined, newest first."""
        return self._find_receipts([tx])[0]

    def _find_receipts(self, txs: Sequence[ChainTx]) -> list[TxReceipt | None]:
        """``_find_receipt`` of each of ``txs``, every hash of every one asked in one JSON-RPC
        batch (``rpc.read_many``: one round trip a tick, not one a hash), each receipt as web3's
        ``get_transaction_receipt`` returns it, with only its ``UpdateSkipped`` logs."""
        hashes = [list(reversed(_hashes(tx))) for tx in txs]
        calls = [("eth_getTransactionReceipt", [h]) for newest in hashes for h in newest]
        answers = iter(rpc.read_many(self._w3, calls))
        found: list[TxReceipt | None] = []
        for newest_first in hashes:
            raws = [next(answers) for _ in newest_first]
            raw = next((r for r in raws if r is not None), None)
            found.append(None if raw is None else _receipt(raw, self._skipped_topic_hex))
        return found

    def _record_mined(self, tx: ChainTx, receipt: TxReceipt) -> ChainTx:
        block_hash = Web3.to_hex(receipt["blockHash"])
        if tx.mined_block == int(receipt["blockNumber"]) and tx.mined_block_hash == block_hash:
            return tx
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        updated = self._store.set(
            tx,
            mined_block=int(receipt["blockNumber"]),
            mined_block_hash=block_hash,
            gas_used=int(receipt["gasUsed"]),
            tx_hash=tx_hash,
            **self._fees_paid(tx, receipt),
        )
        log.info(
            "tx %s nonce %d mined in block %d (status %d, gas used %d)",
            tx_hash,
            tx.nonce,
            int(receipt["blockNumber"]),
            int(receipt["status"]),
            int(receipt["gasUsed"]),
            extra={"tx_hash": tx_hash},
        )
        self._sent.add(cast(int, tx.id))
        return updated

    def _l1_fee(self, tx: ChainTx) -> int:
        """The L1 data fee of ``tx`` on an OP-stack chain (0 elsewhere)."""
        return self._fees.l1_fee(tx.raw_tx) if tx.raw_tx else 0

    def _fees_paid(self, tx: ChainTx, receipt: TxReceipt) -> dict[str, int]:
        """What the mined ``tx`` cost: gas used at its effective price plus the L1 fee (the
        receipt's ``l1Fee`` on an OP-stack node, else the oracle's estimate, else 0)."""
        price = int(receipt.get("effectiveGasPrice", 0) or 0)
        reported = receipt.get("l1Fee")  # OP-stack receipts only
        l1 = (
            int(str(reported), 16)
            if isinstance(reported, str)
            else (int(reported) if isinstance(reported, int) else self._l1_fee(tx))
        )
        return {"l1_fee_wei": l1, "fee_paid_wei": int(receipt["gasUsed"]) * price + l1}

    def _is_canonical(self, number: int, block_hash: str | None) -> bool:
        block = rpc.read(self._w3, "eth_getBlockByNumber", [hex(number), False])
        return block is not None and str(block["hash"]).lower() == block_hash

    def _unmine(self, tx: ChainTx, why: str) -> ChainTx:
        """Forgets where ``tx`` was mined after a reorg so its stored bytes are sent again."""
        assert tx.raw_tx is not None
        log.warning(
            "tx %s nonce %d was mined in block %s but %s (reorg); re-sending it",
            tx.tx_hash,
            tx.nonce,
            tx.mined_block,
            why,
            extra={"tx_hash": tx.tx_hash},
        )
        self._sent.discard(cast(int, tx.id))
        return self._store.set(
            tx,
            mined_block=None,
            mined_block_hash=None,
            gas_used=None,
            tx_hash=Web3.to_hex(Web3.keccak(HexBytes(tx.raw_tx))),
        )

    def _replace(self, tx: ChainTx, counts: _Counts) -> None:
        """Signs, stores, then sends a same-nonce replacement of ``tx`` with bumped fees."""
        assert tx.id is not None and tx.raw_tx is not None
        old = Fees(tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
        fees = bumped_fees(old, self._market_fees(), self._bump_percent, self._max_fee)
        if fees is None:
            if tx.id not in self._capped:
                self._capped.add(tx.id)
                log.warning(
                    "tx %s nonce %d is stuck but its max fee %d wei is at the cap %d wei; "
                    "waiting for it to be mined",
                    tx.tx_hash,
                    tx.nonce,
                    tx.max_fee_per_gas,
                    self._max_fee,
                    extra={"tx_hash": tx.tx_hash},
                )
            self._bump_now.discard(tx.id)
            if tx.id not in self._sent and self._broadcast(tx, counts) is _Sent.OK:
                counts.sent += 1
            return
        raw, tx_hash = self._sign(tx.nonce, _tx_data(tx.raw_tx), tx.gas_limit, fees)
        replaced = self._store.set(
            tx,
            raw_tx=raw,
            tx_hash=tx_hash,
            hashes=",".join([*_hashes(tx), tx_hash]),
            attempt=tx.attempt + 1,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
            broadcast_at=None,
        )
        self._bump_now.discard(tx.id)
        self._sent.discard(tx.id)
        log.info(
            "replacing stuck tx %s nonce %d with %s (attempt %d): max fee %d -> %d wei, "
            "tip %d -> %d wei; jobs %s",
            tx.tx_hash,
            tx.nonce,
            tx_hash,
            replaced.attempt,
            old.max_fee_per_gas,
            fees.max_fee_per_gas,
            old.max_priority_fee_per_gas,
            fees.max_priority_fee_per_gas,
            self._store.jobs_of(tx.id),
            extra={"tx_hash": tx_hash},
        )
        counts.replaced += 1
        self._broadcast(replaced, counts)

    def _confirm(self, tx: ChainTx, receipt: TxReceipt) -> None:
        """Marks ``tx`` confirmed and each of its updates applied or skipped, in one commit."""
        skips: dict[tuple[int, int], list[str]] = {}
        for entry in receipt["logs"]:
            if not self._is_skipped_log(entry):
                continue
            event = self._escrow.events.UpdateSkipped().process_log(entry)
            key = (int(event["args"]["jobId"]), int(event["args"]["status"]))
            skips.setdefault(key, []).append(error_name(event["args"]["reason"], self._abi))
        skipped: list[tuple[int, int, str]] = []

        def applied_or_skipped(updates: list[Update]) -> None:
            for u in updates:
                reasons = skips.get((u.job_id, u.status))
                if reasons:
                    u.applied, u.skip_reason = False, reasons.pop(0)
                    skipped.append((u.job_id, u.status, u.skip_reason))
                else:
                    u.applied, u.skip_reason = True, None

        ended = self._end(tx, self._store.end(tx, TxState.CONFIRMED, None, applied_or_skipped))
        if ended is None:
            return  # ended meanwhile by another process (see _finish_orphaned)
        jobs = _job_ids(ended)
        _log_ended(
            logging.INFO,
            tx,
            "confirmed in block %s: %d updates applied, %d skipped",
            tx.mined_block,
            len(jobs) - len(skipped),
            len(skipped),
            jobs=jobs,
        )
        for job_id, status, reason in skipped:
            log.warning(
                "update of job %d to status %d was skipped by the contract: %s (tx %s)",
                job_id,
                status,
                reason,
                tx.tx_hash,
                extra={"job_id": job_id, "tx_hash": tx.tx_hash},
            )
            if self._on_skipped is not None:
                try:
                    self._on_skipped(job_id, status, reason)
                except Exception:  # the caller's code: its failure must not stop this round
                    log.exception("on_skipped(%d, %d, %s) raised", job_id, status, reason)

    def _is_skipped_log(self, entry: LogReceipt) -> bool:
        topics = entry["topics"]
        # Compared in lower case: a checksum (a keccak of the address) for every log of every
        # batch's receipt cost more than the rest of the receipt's handling.
        return (
            str(entry["address"]).lower() == self._escrow_lower
            and len(topics) > 0
            and HexBytes(topics[0]) == self._skipped_topic
        )

    def _fail(self, tx: ChainTx, reason: str) -> None:
        """Marks ``tx`` fatal and releases its updates for a new batch, in one commit."""

        def released(updates: list[Update]) -> None:
            for u in updates:
                u.tx_id, u.applied, u.skip_reason = None, None, None

        ended = self._end(tx, self._store.end(tx, TxState.FATAL, reason, released))
        if ended is not None:  # else ended meanwhile by another process (see _finish_orphaned)
            jobs = _job_ids(ended)
            _log_ended(
                logging.ERROR,
                tx,
                "failed: %s; its %d updates go into a new transaction",
                reason,
                len(jobs),
                jobs=jobs,
            )

    def _split_reverted(self, tx: ChainTx) -> None:
        """A transaction reverted on-chain: its updates are never sent again as the same set.

        Several updates are split in two halves (``Update.split_group``), each batched on its
        own; the half that reverts again is split again, so in at most log2(n) + 1 rounds the
        updates that revert alone are isolated. An update that reverts alone is held (marked
        skipped, ``REVERTED_ALONE``) with an alert naming its job, and reported to
        ``on_skipped`` (a terminal one settles the job in the engine; the requester keeps
        ``reclaimExpired``); every other update goes through.
        """
        assert tx.id is not None
        alone: list[Update] = []

        def split(updates: list[Update]) -> None:
            if len(updates) == 1:
                (u,) = updates
                u.applied, u.skip_reason = False, REVERTED_ALONE
                alone.append(u)
                return
            half = (len(updates) + 1) // 2
            for i, u in enumerate(updates):
                u.tx_id, u.applied, u.skip_reason = None, None, None
                u.split_group = f"tx{tx.id}-{'a' if i < half else 'b'}"

        ended = self._end(tx, self._store.end(tx, TxState.FATAL, REVERTED, split))
        if ended is None:
            return  # ended meanwhile by another process (see _finish_orphaned)
        jobs = _job_ids(ended)
        if not alone:
            half = (len(jobs) + 1) // 2
            log.error(
                "tx %s nonce %d reverted on-chain; its %d updates are split and sent as two "
                "batches (jobs %s and %s), never as the same set again",
                tx.tx_hash,
                tx.nonce,
                len(jobs),
                jobs[:half],
                jobs[half:],
                extra={"tx_hash": tx.tx_hash, "job_ids": jobs},
            )
            return
        (u,) = alone
        log.critical(
            "ALERT: job %d: its update to status %d reverts on-chain even alone (tx %s nonce "
            "%d); held, not sent again: look at the job (its requester can still reclaim "
            "after the deadline)",
            u.job_id,
            u.status,
            tx.tx_hash,
            tx.nonce,
            extra={"tx_hash": tx.tx_hash, "job_id": u.job_id},
        )
        if self._on_skipped is not None:
            try:
                self._on_skipped(u.job_id, u.status, REVERTED_ALONE)
            except Exception:  # the caller's code: its failure must not stop this round
                log.exception("on_skipped(%d, %d) raised", u.job_id, u.status)

    def _end(self, tx: ChainTx, ended: list[Update] | None) -> list[Update] | None:
        """Forgets ``tx`` in memory once ``TxStore.end`` ended it; passes its answer on."""
        self._forget(cast(int, tx.id))
        return ended

    def _forget(self, tx_id: int) -> None:
        self._sent.discard(tx_id)
        self._bump_now.discard(tx_id)
        self._capped.discard(tx_id)

    # ------------------------------------------------------------------ step 1b: gone keys

    def _finish_orphaned(self, counts: _Counts) -> None:
        """Finishes the stored transactions of other keys whose process is gone (PostgreSQL).

        A key's process that dies leaves its signed transactions unconfirmed; it finishes them
        itself when it comes back. If it stays away (its operator lock free for ``adopt_after``
        seconds, read from ``pg_locks``), this writer finishes them instead, as far as that
        needs no key: it re-sends the stored signed bytes, follows their receipts and confirms
        them, or marks them fatal (reverted: split as usual; nonce taken), releasing their
        updates to every writer. What needs the key (a fee bump, a rebuild without a dropped
        update) waits for the key's return. Checked at most every ``adopt_check_every`` s.
        """
        if (
            not self._store.shared
            or self._clock() < self._orphans_checked + self._adopt_check_every
        ):
            return
        self._orphans_checked = self._clock()
        senders = set(self._store.orphaned_senders())
        now = time.monotonic()
        for gone in set(self._orphaned_since) - senders:
            del self._orphaned_since[gone]  # back, or nothing left to finish
        for sender in sorted(senders):
            since = self._orphaned_since.setdefault(sender, now)
            if now - since >= self._adopt_after:
                self._finish_key(sender, counts)

    def _finish_key(self, sender: str, counts: _Counts) -> None:
        txs = self._store.unconfirmed_of(sender)
        if not txs:
            return
        if sender not in self._adopted:
            self._adopted.add(sender)
            log.warning(
                "operator %s: its process is gone; finishing its %d stored transactions "
                "(nonces %s) from %s",
                sender,
                len(txs),
                [t.nonce for t in txs],
                self._sender,
            )
        head = int(self._w3.eth.block_number)
        chain_nonce = int(
            self._w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "latest")
        )
        for tx in txs:
            self._finish_one(tx, head, chain_nonce, counts)

    def _finish_one(self, tx: ChainTx, head: int, chain_nonce: int, counts: _Counts) -> None:
        """``_track_one`` for another key's transaction: everything but signing."""
        tx_id = cast(int, tx.id)
        receipt = self._find_receipt(tx)
        if receipt is not None:
            tx = self._record_mined(tx, receipt)
            assert tx.mined_block is not None
            if head - tx.mined_block < self._confirmations:
                return
            if not self._is_canonical(tx.mined_block, tx.mined_block_hash):
                self._unmine(tx, "its block is no longer canonical")  # re-sent next round
            elif int(receipt["status"]) == 1:
                self._confirm(tx, receipt)
                counts.confirmed += 1
            else:
                self._split_reverted(tx)
                counts.failed += 1
            return
        if tx.mined_block is not None:
            self._unmine(tx, "its receipt is gone")
            return
        if tx.nonce < chain_nonce:
            if self._find_receipt(tx) is None:
                self._fail(tx, NONCE_TAKEN)
                counts.failed += 1
            return
        with self._store.session() as session:
            updates = self._store.updates_of(session, tx_id)
        if tx_id in self._sent or any(u.held or u.applied is False for u in updates):
            return  # sent already, or it must be rebuilt first: that needs its key
        assert tx.raw_tx is not None
        try:
            self._send_raw(tx.raw_tx)
            outcome = SendOutcome.ACCEPTED
        except Web3RPCError as exc:
            outcome = classify_send_error(_node_message(exc))
        except (Web3Exception, OSError):
            outcome = SendOutcome.RETRYABLE
        if outcome in (SendOutcome.ACCEPTED, SendOutcome.ALREADY_KNOWN):
            self._sent.add(tx_id)
            counts.sent += 1
            log.info(
                "sent tx %s nonce %d of operator %s (its process is gone)",
                tx.tx_hash,
                tx.nonce,
                tx.sender,
                extra={"tx_hash": tx.tx_hash},
            )

    # ------------------------------------------------------------------ step 2: new batches

    def _send_new(self, counts: _Counts) -> None:
        # The round's unmined transactions, read once and kept up to date as batches go.
        budget = _Budget(*self._committed())
        try:
            self._open_batches(counts, budget)
        finally:
            if not budget.refused:
                # Funds did not stop this round (the queue drained, or the cap was reached):
                # a new wait for funds warns again.
                self._short_of_funds = False

    def _open_batches(self, counts: _Counts, budget: _Budget) -> None:
        for _ in range(self._max_inflight):
            if not plan.may_open_batch(
                # Mined ones waiting for their confirmations do not count: with N
                # confirmations they would cap the writer at max_inflight batches per N blocks.
                unconfirmed=budget.unmined,
                max_inflight=self._max_inflight,
                now=self._clock(),
                simulate_after=self._simulate_after,
            ):
                return
            # The claim: on PostgreSQL the batch's rows stay locked (FOR UPDATE SKIP LOCKED)
            # in this session until the signed transaction and its tx_id are committed in it,
            # so writers of other keys batch other updates instead of colliding; a writer that
            # dies meanwhile leaves them unclaimed (its connection's transaction is rolled back).
            with self._store.claim() as claim:
                batch, limits = self._next_batch(claim)
                tx = self._create(batch, limits, counts, claim, budget) if batch else None
            if not batch or tx is None:
                return
            sent = self._broadcast(tx, counts)
            if sent is _Sent.OK:
                counts.sent += 1
            elif sent is _Sent.KEPT:
                return  # the node refuses for now: no more new transactions this round
            else:  # its nonce was taken: it is no longer in flight
                budget.unmined, budget.committed = self._committed()

    def _next_batch(self, claim: Session) -> tuple[list[Update], Mapping[int, int]]:
        """The oldest queued updates that may go together: of the oldest one's split group
        (a set that reverted on-chain is never re-sent whole), at most ``batch_size`` and,
        beyond the first, within ``max_batch_gas`` (see ``batch_gas``); claimed in ``claim``
        (``TxStore.queued``); with their jobs' callback limits."""
        queued = self._store.queued(claim, self._batch_size)
        if queued is None:
            return [], {}
        first, batch, limits = queued
        batch = plan.within_gas(batch, limits, self._max_batch_gas)
        ready = plan.batch_ready(
            size=len(batch),
            batch_size=self._batch_size,
            batch_wait=self._batch_wait,
            oldest_age=self._clock() - _epoch(batch[0].created_at) if batch else 0.0,
            split=first.split_group is not None,  # a reverted set's half goes at once
        )
        return (batch if ready else []), limits

    def _create(
        self,
        batch: list[Update],
        limits: Mapping[int, int],
        counts: _Counts,
        claim: Session,
        budget: _Budget,
    ) -> ChainTx | None:
        """Simulates, signs and stores (in ``claim``, the session that selected ``batch``) one
        ``applyUpdates`` for ``batch`` (``limits``: its jobs' callback limits) if the key pays
        for it (``budget``: the round's funds, counted up when it is stored); None if it
        cannot."""
        data = _calldata(batch)
        jobs = _job_ids(batch)
        fees = self._market_fees()
        sized = batch_gas(batch, limits, len(data))
        if not self._fundable(write_cost(sized, fees.max_fee_per_gas), budget):
            return None  # the limit is never below ``sized``: no need to simulate to know
        gas = self._simulate(data, jobs, counts, sized, fees)
        if gas is None:
            return None
        nonce = self._next_nonce()
        raw, tx_hash = self._sign(nonce, data, gas, fees)
        l1_fee = self._fees.l1_fee(raw)
        cost = write_cost(gas, fees.max_fee_per_gas, l1_fee)
        if not self._fundable(cost, budget):
            return None  # nothing stored: the nonce and the updates wait for the next round
        row = ChainTx(
            sender=self._sender,
            nonce=nonce,
            attempt=0,
            hashes=tx_hash,
            state=TxState.UNCONFIRMED,
            raw_tx=raw,
            tx_hash=tx_hash,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
            gas_limit=gas,
        )
        if not self._store.insert(claim, row, [cast(int, u.id) for u in batch]):
            return None
        budget.unmined += 1
        budget.committed += cost
        if l1_fee and row.id is not None:
            self._l1_fees[row.id] = l1_fee
        log.info(
            "stored tx %s nonce %d: applyUpdates of %d updates, gas limit %d, max fee %d wei, "
            "tip %d wei; jobs %s",
            tx_hash,
            nonce,
            len(batch),
            gas,
            fees.max_fee_per_gas,
            fees.max_priority_fee_per_gas,
            jobs,
            extra={"tx_hash": tx_hash, "job_ids": jobs},
        )
        return row

    def _simulate(
        self, data: HexBytes, jobs: list[int], counts: _Counts, sized: int, fees: Fees
    ) -> int | None:
        """Runs the batch as it will be sent: ``eth_call`` from the operator with the real fee
        fields (a consumer cannot tell it from the mined run by ``tx.gasprice``) and the gas
        limit it will carry: ``sized`` (``batch_gas``: the items' statuses, data and callback
        limits), raised to ``eth_estimateGas`` (same fields) + 25% when that is more. The
        estimate never lowers it: an estimate finds the least gas that does not revert, which
        for a batch is the gas at which callback items are skipped. The estimate comes first,
        so a batch that needs more than its sizing is simulated and sent with more, never
        left queued for running out of gas. No batch is sent without an estimate: when the
        estimate fails without revert data (a node fault, or a node that caps the estimate at
        what the key's balance pays for), the call at ``sized`` tells a revert or a key that
        cannot pay from a fault, and the batch waits for the next round.

        Returns:
            The gas limit, or None when the batch must not be sent now.
        """
        unsized: TxParams = {
            "from": self._sender,
            "to": self._escrow.address,
            "data": data,
            **{k: v for k, v in self._fee_fields(fees).items() if k != "type"},  # type: ignore[typeddict-item]  # fee fields only
        }
        try:
            try:
                limit = max(sized, gas_limit_for(int(self._w3.eth.estimate_gas(unsized))))
            except Web3RPCError as exc:
                if not revert_data(exc):
                    self._w3.eth.call({**unsized, "gas": sized})  # raises what is wrong, if it can
                raise
            params: TxParams = {**unsized, "gas": limit}
            self._w3.eth.call(params)
        except ContractLogicError as exc:
            self._simulation_reverted(decode_revert(revert_data(exc) or b"", self._abi), jobs)
            counts.failed += 1
            return None
        except Web3RPCError as exc:
            found = revert_data(exc)
            if found:
                self._simulation_reverted(decode_revert(found, self._abi), jobs)
                counts.failed += 1
                return None
            message = _node_message(exc)
            if classify_send_error(message) is SendOutcome.INSUFFICIENT_FUNDS:
                raise self._insufficient_funds(None) from exc
            log.warning(
                "simulating applyUpdates for jobs %s failed: %s; retrying next round",
                jobs,
                message,
            )
            return None
        return limit

    def _fundable(self, cost: int, budget: _Budget) -> bool:
        """Whether the key can pay a new transaction costing up to ``cost`` wei beside its
        unmined ones, with room for a fee bump of each (``plan.may_fund``). The round's
        figures (``_Budget``): the unmined transactions' worst cases, read from the store at
        the round's start, and the balance, read from the node when first needed here and
        only when some are unmined.
        When the key cannot pay, one warning names it, what it holds and what is committed,
        and new batches wait for mined ones to free the funds; it is not repeated until a
        round ends for another reason (``_send_new``)."""
        if budget.unmined and budget.balance is None:
            budget.balance = int(rpc.read(self._w3, "eth_getBalance", [self._sender, "latest"]), 16)
        if plan.may_fund(
            balance=budget.balance or 0,
            committed=budget.committed,
            cost=cost,
            unmined=budget.unmined,
            bump_percent=self._bump_percent,
        ):
            return True
        budget.refused = True
        if not self._short_of_funds:
            self._short_of_funds = True
            log.warning(
                "operator %s can pay for %d transactions in flight, not %d: balance %d wei, "
                "%d wei committed at their gas limits and max fees (and room for a %d%% fee "
                "bump), the next batch up to %d; new batches wait for those to be mined "
                "(fund the key for BRIDGE_MAX_INFLIGHT batches to keep that many in flight)",
                self._sender,
                budget.unmined,
                budget.unmined + 1,
                budget.balance,
                budget.committed,
                self._bump_percent,
                cost,
            )
        return False

    def _committed(self) -> tuple[int, int]:
        """How many of the key's transactions are sent and not mined, and the most they may
        cost together (gas limit x max fee of their current bytes, plus the L1 fee on an
        OP-stack chain, remembered from when they were signed)."""
        committed = 0
        rows = self._store.unmined_costs()
        known, self._l1_fees = self._l1_fees, {}  # only the unmined ones' are kept
        for tx_id, gas_limit, max_fee in rows:
            l1_fee = known.get(tx_id)
            if l1_fee is None and self._fees.op_stack:
                l1_fee = self._fees.l1_fee(self._store.raw_of(tx_id))
            if l1_fee is not None:
                self._l1_fees[tx_id] = l1_fee
            committed += write_cost(gas_limit, max_fee, l1_fee or 0)
        return len(rows), committed

    def _simulation_reverted(self, revert: ContractRevert, jobs: list[int]) -> None:
        self._simulate_after = self._clock() + self._revert_backoff
        log.error(
            "applyUpdates for jobs %s would revert with %s; not sent, the updates stay queued "
            "and are tried again in %.0fs",
            jobs,
            revert.name,
            self._revert_backoff,
        )
        if revert.name == _ACCESS_DENIED:
            log.critical(
                "ALERT: operator key %s lacks OPERATOR_ROLE on JobEscrow %s: no status can be "
                "written on-chain until the admin calls grantRole(OPERATOR_ROLE, %s)",
                self._sender,
                self._escrow.address,
                self._sender,
            )

    # ------------------------------------------------------------------ signing and sending

    def _next_nonce(self) -> int:
        """Highest nonce stored for this key + 1, or the chain's count if someone went further."""
        return max(self._store.next_nonce(), self._chain_nonce())

    def _chain_nonce(self) -> int:
        return int(rpc.read(self._w3, "eth_getTransactionCount", [self._sender, "latest"]), 16)

    def _market_fees(self) -> Fees:
        return self._fees.market()

    def _fee_fields(self, fees: Fees) -> dict[str, Any]:
        """The fee fields of a transaction: ``gasPrice`` on a legacy chain, else EIP-1559's."""
        if self._fees.legacy:
            return {"gasPrice": Wei(fees.max_fee_per_gas)}
        return {
            "type": 2,
            "maxFeePerGas": Wei(fees.max_fee_per_gas),
            "maxPriorityFeePerGas": Wei(fees.max_priority_fee_per_gas),
        }

    def _sign(self, nonce: int, data: HexBytes, gas: int, fees: Fees) -> tuple[str, str]:
        """Signs locally; returns the raw transaction and its hash, both 0x-hex."""
        if self._chain_id is None:
            self._chain_id = int(self._w3.eth.chain_id)
        signed = self._account.sign_transaction(
            {
                "chainId": self._chain_id,
                "nonce": nonce,
                "to": self._escrow.address,
                "data": data,
                "gas": gas,
                "value": Wei(0),
                **self._fee_fields(fees),
            }
        )
        return Web3.to_hex(signed.raw_transaction), Web3.to_hex(signed.hash)

    def _send_raw(self, raw_tx: str) -> None:
        """Hands the stored signed bytes to the node (the one place a transaction leaves)."""
        rpc.read(self._w3, "eth_sendRawTransaction", [Web3.to_hex(HexBytes(raw_tx))])

    def _broadcast(self, tx: ChainTx, counts: _Counts) -> _Sent:
        """Sends the stored bytes of ``tx`` and acts on the node's answer.

        Returns:
            OK when the node has the transaction (accepted, already known, or already mined),
            FATAL when its nonce was taken by another transaction, KEPT otherwise.

        Raises:
            InsufficientFunds: the account cannot pay for it.
        """
        assert tx.id is not None and tx.raw_tx is not None
        try:
            self._send_raw(tx.raw_tx)
            outcome, message = SendOutcome.ACCEPTED, ""
        except Web3RPCError as exc:
            message = _node_message(exc)
            outcome = classify_send_error(message)
        except (Web3Exception, OSError) as exc:
            outcome, message = SendOutcome.RETRYABLE, exc.__class__.__name__
        if outcome in (SendOutcome.ACCEPTED, SendOutcome.ALREADY_KNOWN):
            self._sent.add(tx.id)
            if tx.broadcast_at is None:
                self._store.set(tx, broadcast_at=self._clock())
            log.info(
                "sent tx %s nonce %d attempt %d%s",
                tx.tx_hash,
                tx.nonce,
                tx.attempt,
                " (node already had it)" if outcome is SendOutcome.ALREADY_KNOWN else "",
                extra={"tx_hash": tx.tx_hash},
            )
            return _Sent.OK
        if outcome is SendOutcome.NONCE_TOO_LOW:
            if self._find_receipt(tx) is not None:
                self._sent.add(tx.id)  # ours, already mined: tracked next round
                return _Sent.OK
            self._fail(tx, NONCE_TAKEN)
            counts.failed += 1
            return _Sent.FATAL
        if outcome is SendOutcome.INSUFFICIENT_FUNDS:
            raise self._insufficient_funds(tx)
        if outcome is SendOutcome.UNDERPRICED:
            self._bump_now.add(tx.id)
            what, then = "is underpriced for the node", "bumping its fees next round"
        else:
            what, then = "was not accepted", "the stored tx is sent again next round"
        log.warning(
            "tx %s nonce %d %s (%s); %s",
            tx.tx_hash,
            tx.nonce,
            what,
            message,
            then,
            extra={"tx_hash": tx.tx_hash},
        )
        return _Sent.KEPT

    def _insufficient_funds(self, tx: ChainTx | None) -> InsufficientFunds:
        """Logs one error line naming the address and balance; returns the error to raise."""
        balance = int(self._w3.eth.get_balance(self._sender))
        if tx is None:
            what = "simulating the next batch"
        else:
            need = write_cost(tx.gas_limit, tx.max_fee_per_gas, self._l1_fee(tx))
            what = f"tx {tx.tx_hash} nonce {tx.nonce} needs up to {need} wei"
        message = (
            f"operator account {self._sender} has insufficient funds for gas: balance "
            f"{balance} wei ({Web3.from_wei(balance, 'ether')} ETH); {what}; fund the account"
        )
        log.error(message, extra={"tx_hash": tx.tx_hash if tx is not None else None})
        return InsufficientFunds(message)
