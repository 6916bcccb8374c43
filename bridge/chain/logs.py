"""The escrow's logs as the bridge reads them: frozen dataclasses, nothing of web3's.

``bridge.chain.reader`` fills them from ``eth_getLogs`` (``JobSubmitted`` through
``bridge.chain.submitted``, which is compiled with mypyc when the setup built it: the classes
live here, in a module that is never compiled, so they stay ordinary dataclasses). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_typing import ChecksumAddress

from bridge.chain.spec import Status


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
    #: ``abi.encode(spec)`` as the contract hashed it into ``spec_hash``: stored as it is and
    #: decoded where the spec is acted on (``bridge.chain.submitted.read_spec``).
    spec_abi: bytes
    callback_gas_limit: int = 0  # gas the job's callback gets (the event's last field); 0 = none


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
