"""Reading the escrow's logs: adaptive block ranges, decoding into frozen dataclasses.

``LogReader.fetch(from_block, to_block)`` returns the contract's logs in that range decoded into
``SubmittedLog`` / ``StatusLog`` / ``CancelRequestedLog`` (nothing past this module sees web3's
``AttributeDict``). ``RangeSizer`` is the pure policy for the block range: it halves on "too many
results" or a timeout and doubles after quiet ranges, between 1 and ``max_range`` blocks.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.codec import ABICodec
from eth_abi.exceptions import DecodingError
from eth_typing import ChecksumAddress
from eth_utils.abi import collapse_if_tuple, event_abi_to_log_topic
from web3 import Web3
from web3.exceptions import Web3Exception
from web3.types import BlockIdentifier, RPCEndpoint

from bridge.chain import rpc, submitted
from bridge.chain.logs import CancelRequestedLog as CancelRequestedLog
from bridge.chain.logs import ChainLog as ChainLog
from bridge.chain.logs import LogPosition as LogPosition
from bridge.chain.logs import StatusLog as StatusLog
from bridge.chain.logs import SubmittedLog as SubmittedLog
from bridge.chain.rpc import is_log_limit
from bridge.chain.spec import Status
from bridge.chain.submitted import spec_from_raw as spec_from_raw
from bridge.chain.submitted import submitted_log
from bridge.errors import RpcUnavailable
from bridge.logs import redact, url_secrets

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


@dataclass
class RangeSizer:
    """Adaptive ``eth_getLogs`` range: shrink on overload, grow when quiet. Pure."""

    max_range: int
    size: int = 0
    quiet_logs: int = 1000
    #: A range that returned more logs than this is halved for the next fetch: the logs of one
    #: range are held (decoded, then stored in one transaction) at once, so this bounds the
    #: memory a dense stretch of chain takes.
    busy_logs: int = 2000

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
        """After a successful fetch: grow when the range returned few logs, shrink when it
        returned more than ``busy_logs``."""
        if n_logs > self.busy_logs:
            self.size = max(1, self.size // 2)
        elif n_logs < self.quiet_logs:
            self.size = min(self.max_range, self.size * 2)


def _raw_types(abi_type: str) -> str:
    """An ABI type with every ``string`` replaced by ``bytes`` (identical encoding)."""
    return re.sub(r"\bstring\b", "bytes", abi_type)


#: What decoding a malformed log raises: eth_abi's errors, and the hex, key, type and attribute
#: errors of a log whose fields are missing or not what the ABI says.
_UNDECODABLE = (
    DecodingError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    OverflowError,
    AttributeError,
)


def decoder_build() -> str:
    """Which build of ``bridge.chain.submitted`` runs: ``"mypyc"`` (compiled by
    ``scripts/build-native``, which ``scripts/setup`` runs) or ``"python"`` (the source)."""
    return "python" if str(submitted.__file__).endswith(".py") else "mypyc"


def is_range_error(exc: BaseException) -> bool:
    """Whether an eth_getLogs error means "ask for fewer blocks" (or a timeout): any provider's
    wording, as collected in ``bridge.chain.rpc.LOG_LIMIT_WORDINGS``."""
    return is_log_limit(str(exc))


@dataclass(frozen=True)
class _EventLayout:
    """How to decode one event: its indexed inputs (from topics) and the types of its data.

    Decoding with the ABI codec directly, instead of web3's ``process_log``, gives the same
    values (the same codec and types) about 20 times faster: ``process_log`` spends most of its
    time normalising and re-mapping the decoded tree (measured with the ingest benchmark,
    ``bench/ingest.py``).
    """

    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, ABI type)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]

    @classmethod
    def of(cls, entry: dict[str, Any]) -> _EventLayout:
        inputs = entry.get("inputs", [])
        indexed = tuple((i["name"], collapse_if_tuple(i)) for i in inputs if i.get("indexed"))
        data = [i for i in inputs if not i.get("indexed")]
        return cls(
            name=entry["name"],
            indexed=indexed,
            data_names=tuple(i["name"] for i in data),
            data_types=tuple(_raw_types(collapse_if_tuple(i)) for i in data),
        )

    def decode(self, codec: ABICodec, topics: Sequence[Any], data: bytes) -> dict[str, Any]:
        """The event's arguments by name (tuples for structs; every string as raw ``bytes``).

        Raises:
            ValueError: the log's topics do not match the event (eth_abi's ``DecodingError``
                is a ``ValueError`` too).
        """
        if len(topics) != len(self.indexed):
            expected = len(self.indexed)
            raise ValueError(f"{self.name}: {len(topics)} indexed topics, expected {expected}")
        args: dict[str, Any] = {}
        for (name, abi_type), topic in zip(self.indexed, topics, strict=True):
            if abi_type == "uint256" and len(topic) == 32:  # a job id (the only indexed integer)
                args[name] = int.from_bytes(topic, "big")
            else:
                args[name] = codec.decode([abi_type], bytes(topic))[0]
        args.update(zip(self.data_names, codec.decode(self.data_types, data), strict=True))
        return args


class LogReader:
    """Fetches and decodes the escrow's logs."""

    def __init__(self, w3: Web3, address: ChecksumAddress, abi: list[dict[str, Any]]) -> None:
        self._w3 = w3
        self._address = address
        # Node errors may quote the request URL, which may carry a provider key.
        self._secrets = url_secrets(str(getattr(w3.provider, "endpoint_uri", "") or ""))
        self._events: dict[bytes, _EventLayout] = {}
        for entry in abi:
            if entry.get("type") == "event" and not entry.get("anonymous"):
                topic = event_abi_to_log_topic(entry)  # type: ignore[arg-type]
                self._events[bytes(topic)] = _EventLayout.of(entry)
        #: The same by the topic's hex text as nodes send it (0x, lowercase): no conversion.
        self._by_hex = {"0x" + topic.hex(): event for topic, event in self._events.items()}
        self._submitted_hex = next(
            (hex_topic for hex_topic, e in self._by_hex.items() if e.name == "JobSubmitted"), None
        )
        #: Logs skipped because they could not be decoded (each logged once).
        self.undecodable = 0

    def head(self) -> int:
        """The latest block number."""
        try:
            return int(rpc.read(self._w3, "eth_blockNumber", []), 16)
        except (Web3Exception, OSError, ValueError, TypeError) as exc:
            raise RpcUnavailable(f"eth_blockNumber failed: {exc.__class__.__name__}") from exc

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` on the current chain, or None if the chain is shorter."""
        try:
            block = rpc.read(self._w3, "eth_getBlockByNumber", [hex(number), False])
            if block is None:
                return None
            return str(block["hash"]).lower()
        except (Web3Exception, OSError, KeyError, TypeError) as exc:
            if "not found" in str(exc).lower():
                return None
            raise RpcUnavailable(f"eth_getBlockByNumber failed: {exc.__class__.__name__}") from exc

    def block_timestamp(self, tag: BlockIdentifier = "latest") -> int:
        """The timestamp of a block (default: the latest), i.e. the chain's notion of now."""
        block_id = hex(tag) if isinstance(tag, int) else str(tag)
        try:
            block = rpc.read(self._w3, "eth_getBlockByNumber", [block_id, False])
            return int(block["timestamp"], 16)
        except (Web3Exception, OSError, KeyError, TypeError, ValueError) as exc:
            raise RpcUnavailable(f"eth_getBlockByNumber failed: {exc.__class__.__name__}") from exc

    def fetch(self, from_block: int, to_block: int) -> list[ChainLog]:
        """The decoded logs of blocks ``from_block..to_block``, in chain order.

        Raises:
            RpcUnavailable: the node failed; ``is_range_error`` tells whether a smaller range
                may succeed.
        """
        # The provider's raw answer, not ``w3.eth.get_logs``: web3's result formatters turn every
        # field of every log into HexBytes/int first, which cost as much as the decoding itself
        # (measured with bench/ingest.py); the hex strings are converted here once.
        where = f"eth_getLogs {from_block}..{to_block}"
        query = {"address": self._address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        try:
            reply = self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
        except (Web3Exception, OSError, ValueError) as exc:
            raise RpcUnavailable(f"{where} failed: {redact(str(exc), self._secrets)}") from None
        error = reply.get("error")
        raw = reply.get("result")
        if error is not None or not isinstance(raw, list):
            message = error.get("message", error) if isinstance(error, dict) else error
            text = redact(str(message or "no result"), self._secrets)
            raise RpcUnavailable(f"{where} failed: {text}")
        decoded: list[ChainLog] = []
        # Decoding allocates many small objects, none of them cyclic: the cyclic collector's
        # passes over the growing heap cost a quarter of the decoding (bench/ingest.py), so it
        # is paused for the loop (reference counting still frees everything as usual).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._decode_all(raw, decoded)
        finally:
            if collecting:
                gc.enable()
        return decoded

    def _decode_all(self, raw: list[Any], decoded: list[ChainLog]) -> None:
        """Decodes ``raw`` into ``decoded``, skipping (and logging) what cannot be decoded."""
        submitted = self._submitted_hex
        for entry in raw:
            # Each log on its own: one that cannot be decoded is logged and skipped, never
            # failing the range (the scanner would stop at its block for good).
            try:
                topics = entry["topics"]
                if topics and topics[0] == submitted:  # most logs: straight to its decoder
                    one: ChainLog | None = submitted_log(entry)
                else:
                    one = self._decode(entry)
            except _UNDECODABLE as exc:
                self.undecodable += 1
                log.error(
                    "skipping an undecodable log (block %s, tx %s, index %s): %s",
                    _field(entry, "blockNumber"),
                    _field(entry, "transactionHash"),
                    _field(entry, "logIndex"),
                    f"{exc.__class__.__name__}: {str(exc)[:200]}",
                )
                continue
            if one is not None:
                decoded.append(one)

    def terminal_job_ids(self, from_block: int, to_block: int) -> set[int]:
        """Ids of the jobs with a terminal event (completed, failed, cancelled, expired) in the
        blocks ``from_block..to_block``: one ``eth_getLogs`` filtered by topic, and
        only the indexed job id read (nothing decoded).

        Raises:
            RpcUnavailable: the node failed.
        """
        topics = [
            "0x" + topic.hex()
            for topic, event in self._events.items()
            if (status := STATUS_EVENTS.get(event.name)) is not None and status.is_terminal
        ]
        where = f"eth_getLogs {from_block}..{to_block} (terminal events)"
        query = {
            "address": self._address,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
            "topics": [topics],
        }
        try:
            reply = self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
        except (Web3Exception, OSError, ValueError) as exc:
            raise RpcUnavailable(f"{where} failed: {redact(str(exc), self._secrets)}") from None
        raw = reply.get("result")
        if reply.get("error") is not None or not isinstance(raw, list):
            text = redact(str(reply.get("error") or "no result"), self._secrets)
            raise RpcUnavailable(f"{where} failed: {text}")
        try:
            return {int(entry["topics"][1], 16) for entry in raw}
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise RpcUnavailable(f"{where}: unreadable log: {exc}") from exc

    def _decode(self, entry: dict[str, Any]) -> ChainLog | None:
        """Decodes one raw JSON-RPC log (hex strings) of the escrow; None if not ours."""
        hex_topics = entry["topics"]
        if not hex_topics:
            return None
        event = self._by_hex.get(hex_topics[0]) or self._events.get(
            bytes.fromhex(hex_topics[0][2:])  # another spelling (uppercase hex)
        )
        if event is None:
            return None
        name = event.name
        if name == "JobSubmitted":
            return submitted_log(entry)
        topics = [bytes.fromhex(t[2:]) for t in hex_topics[1:]]
        data = bytes.fromhex(entry["data"][2:])
        at = LogPosition(
            block_number=int(entry["blockNumber"], 16),
            block_hash=str(entry["blockHash"]).lower(),
            tx_hash=str(entry["transactionHash"]).lower(),
            log_index=int(entry["logIndex"], 16),
        )
        args = event.decode(self._w3.codec, topics, data)
        if name == "CancelRequested":
            return CancelRequestedLog(at=at, job_id=int(args["jobId"]))
        status = STATUS_EVENTS.get(name)
        if status is None:
            return None
        data = args.get("remoteJobId") or args.get("resultURI") or args.get("reason") or b""
        text = bytes(data).decode("utf-8", "replace")
        return StatusLog(at=at, job_id=int(args["jobId"]), status=status, data=text)


def _field(entry: object, name: str) -> str:
    """A raw log's field for a log line (a malformed log may lack it)."""
    value = entry.get(name) if isinstance(entry, dict) else None
    return str(value)[:80] if value is not None else "?"


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
