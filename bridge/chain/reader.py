"""Reading the escrow's logs: adaptive block ranges, decoding into frozen dataclasses.

``LogReader.fetch(from_block, to_block)`` returns the contract's logs in that range decoded into
``SubmittedLog`` / ``StatusLog`` / ``CancelRequestedLog`` (nothing past this module sees web3's
``AttributeDict``). ``RangeSizer`` is the pure policy for the block range: it halves on "too many
results" or a timeout and doubles after quiet ranges, between 1 and ``max_range`` blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import BlockIdentifier

from bridge.chain.spec import JobSpec, Status
from bridge.errors import RpcUnavailable

log = logging.getLogger("bridge.chain")

#: Event name -> the Status it reports (for the lifecycle events).
STATUS_EVENTS = {
    "JobAccepted": Status.ACCEPTED,
    "JobRunning": Status.RUNNING,
    "JobCompleted": Status.COMPLETED,
    "JobFailed": Status.FAILED,
    "JobCancelled": Status.CANCELLED,
    "JobExpired": Status.EXPIRED,
}


@dataclass(frozen=True)
class LogPosition:
    """Where a log is: block, block hash, transaction and index."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class SubmittedLog:
    """A ``JobSubmitted`` event."""

    at: LogPosition
    job_id: int
    requester: ChecksumAddress
    spec_hash: bytes
    payment: int
    deadline: int
    spec: JobSpec


@dataclass(frozen=True)
class StatusLog:
    """A lifecycle event that moved job ``job_id`` to ``status``."""

    at: LogPosition
    job_id: int
    status: Status
    data: str = ""  # remote job id, result URI or reason, where the event has one


@dataclass(frozen=True)
class CancelRequestedLog:
    """A ``CancelRequested`` event."""

    at: LogPosition
    job_id: int


ChainLog = SubmittedLog | StatusLog | CancelRequestedLog


@dataclass
class RangeSizer:
    """Adaptive ``eth_getLogs`` range: shrink on overload, grow when quiet. Pure."""

    max_range: int
    size: int = 0
    quiet_logs: int = 1000

    def __post_init__(self) -> None:
        if self.size <= 0:
            self.size = self.max_range

    def shrink(self) -> bool:
        """Halves the range; False when it is already one block (the error is not about size)."""
        if self.size <= 1:
            return False
        self.size = max(1, self.size // 2)
        return True

    def record(self, n_logs: int) -> None:
        """After a successful fetch: grow when the range returned few logs."""
        if n_logs < self.quiet_logs:
            self.size = min(self.max_range, self.size * 2)


_TOO_MANY = ("too many", "query returned more than", "limit exceeded", "response size", "range")


def is_range_error(exc: BaseException) -> bool:
    """Whether an eth_getLogs error means "ask for fewer blocks" (or a timeout)."""
    text = str(exc).lower()
    return "timeout" in text or "timed out" in text or any(s in text for s in _TOO_MANY)


class LogReader:
    """Fetches and decodes the escrow's logs."""

    def __init__(self, w3: Web3, address: ChecksumAddress, abi: list[dict[str, Any]]) -> None:
        self._w3 = w3
        self._address = address
        self._contract = w3.eth.contract(address=address, abi=abi)
        self._events: dict[bytes, Any] = {}
        for entry in abi:
            if entry.get("type") == "event":
                topic = event_abi_to_log_topic(entry)  # type: ignore[arg-type]
                self._events[bytes(topic)] = getattr(self._contract.events, entry["name"])()

    def head(self) -> int:
        """The latest block number."""
        try:
            return int(self._w3.eth.block_number)
        except (Web3Exception, OSError) as exc:
            raise RpcUnavailable(f"eth_blockNumber failed: {exc.__class__.__name__}") from exc

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` on the current chain, or None if the chain is shorter."""
        try:
            block = self._w3.eth.get_block(number)
        except (Web3Exception, OSError) as exc:
            if "not found" in str(exc).lower():
                return None
            raise RpcUnavailable(f"eth_getBlockByNumber failed: {exc.__class__.__name__}") from exc
        block_hash = block.get("hash")
        return None if block_hash is None else "0x" + bytes(block_hash).hex()

    def block_timestamp(self, tag: BlockIdentifier = "latest") -> int:
        """The timestamp of a block (default: the latest), i.e. the chain's notion of now."""
        try:
            return int(self._w3.eth.get_block(tag)["timestamp"])
        except (Web3Exception, OSError) as exc:
            raise RpcUnavailable(f"eth_getBlockByNumber failed: {exc.__class__.__name__}") from exc

    def fetch(self, from_block: int, to_block: int) -> list[ChainLog]:
        """The decoded logs of blocks ``from_block..to_block``, in chain order.

        Raises:
            RpcUnavailable: the node failed; ``is_range_error`` tells whether a smaller range
                may succeed.
        """
        try:
            raw = self._w3.eth.get_logs(
                {"address": self._address, "fromBlock": from_block, "toBlock": to_block}
            )
        except (Web3Exception, OSError, ValueError) as exc:
            raise RpcUnavailable(f"eth_getLogs {from_block}..{to_block} failed: {exc}") from exc
        decoded = [self._decode(entry) for entry in raw]
        return [d for d in decoded if d is not None]

    def _decode(self, entry: Any) -> ChainLog | None:
        topics = entry["topics"]
        if not topics:
            return None
        event = self._events.get(bytes(topics[0]))
        if event is None:
            return None
        ev = event.process_log(entry)
        args = ev["args"]
        at = LogPosition(
            block_number=int(ev["blockNumber"]),
            block_hash="0x" + bytes(ev["blockHash"]).hex(),
            tx_hash="0x" + bytes(ev["transactionHash"]).hex(),
            log_index=int(ev["logIndex"]),
        )
        name = ev["event"]
        if name == "JobSubmitted":
            return SubmittedLog(
                at=at,
                job_id=int(args["jobId"]),
                requester=Web3.to_checksum_address(args["requester"]),
                spec_hash=bytes(args["specHash"]),
                payment=int(args["payment"]),
                deadline=int(args["deadline"]),
                spec=JobSpec.from_abi(args["spec"]),
            )
        if name == "CancelRequested":
            return CancelRequestedLog(at=at, job_id=int(args["jobId"]))
        status = STATUS_EVENTS.get(name)
        if status is None:
            return None
        data = args.get("remoteJobId") or args.get("resultURI") or args.get("reason") or ""
        return StatusLog(at=at, job_id=int(args["jobId"]), status=status, data=str(data))


def find_deployment_block(w3: Web3, address: ChecksumAddress) -> int:
    """The block in which the contract at ``address`` was deployed (binary search on its code).

    Needs a node that serves historic state; returns 0 when it cannot tell.
    """
    try:
        high = int(w3.eth.block_number)
        if not w3.eth.get_code(address, high):
            return 0
        low = 0
        while low < high:
            mid = (low + high) // 2
            if w3.eth.get_code(address, mid):
                high = mid
            else:
                low = mid + 1
        return low
    except (Web3Exception, OSError, ValueError):
        log.warning("cannot find the deployment block of %s; scanning from block 0", address)
        return 0
