"""One error tree for the whole bridge.

Third-party exceptions (web3, httpx, SQLAlchemy) are translated into these at each boundary with
``raise ... from exc``, so callers handle one hierarchy and messages never carry secrets::

    BridgeError
    ├── ConfigError            bad or missing configuration; the message says what to fix
    ├── ChainError             JSON-RPC / node problems
    │   ├── RpcUnavailable     the node cannot be reached (transient)
    │   ├── ReorgDetected      the chain under the scan cursor changed
    │   └── ContractRevert     a call or transaction reverted; carries the decoded custom error
    ├── TxError                the transaction manager could not get a write on-chain
    │   └── InsufficientFunds  the operator account cannot pay for gas (alert, do not spin)
    ├── RemoteError            Charity Engine API problems
    │   ├── RemoteTransient    5xx, 429, timeouts, malformed bodies: retry with backoff
    │   ├── RemoteRejected     a 4xx: the request is wrong; do not retry
    │   │   └── RemoteAuthError  401: missing or unknown authenticator
    │   └── DownloadRefused    an output URL off the CE host, or over the size cap
    ├── SpecError              a job spec the bridge cannot run (fails the job on-chain)
    ├── StoreError             database problems
    │   ├── StoreUnavailable   the database cannot be reached right now (transient)
    │   ├── DatabaseBound      the database belongs to another chain or contract
    │   └── AlreadyRunning     another bridge process holds this database's lock
    └── OperatorError          an operator request (the HTTP API) the bridge refuses
        ├── JobNotFound        no job with that id (HTTP 404)
        ├── JobConflict        the job's state does not allow the action (HTTP 409)
        └── BridgeNotRunning   the action needs a bridge running in this process (HTTP 503)
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message is one line saying what to fix."""


class ChainError(BridgeError):
    """A JSON-RPC or node problem."""


class RpcUnavailable(ChainError):
    """The node could not be reached or answered with a server error; worth retrying."""


class ReorgDetected(ChainError):
    """A stored block hash no longer matches the chain: the scan must rewind."""

    def __init__(self, block_number: int) -> None:
        super().__init__(f"chain reorganised at or below block {block_number}")
        self.block_number = block_number


class ContractRevert(ChainError):
    """A call or transaction reverted; ``name`` and ``args`` are the decoded custom error."""

    def __init__(self, name: str, args: tuple[object, ...] = (), raw: bytes = b"") -> None:
        shown = ", ".join(_show_arg(a) for a in args)
        super().__init__(f"contract reverted with {name}({shown})")
        self.name = name
        self.args_ = args
        self.raw = raw


#: Roles of the escrow by their bytes32 value, so a revert names them instead of 32 bytes.
ROLE_NAMES: dict[bytes, str] = {
    bytes(32): "DEFAULT_ADMIN_ROLE",
    # keccak256("OPERATOR_ROLE"); a unit test checks it against bridge.chain.deploy.
    bytes.fromhex(
        "97667070c54ef182b0f5858b034beac1b6f3089aa2d3188bb1e8929f4fa9b929"
    ): "OPERATOR_ROLE",
}


def _show_arg(value: object) -> str:
    """An argument of a custom error as an operator reads it: roles by name, bytes as 0x hex."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        return ROLE_NAMES.get(data, "0x" + data.hex())
    if isinstance(value, str):
        return value if value.startswith("0x") else repr(value)
    return repr(value)


class TxError(BridgeError):
    """The transaction manager could not get a write on-chain."""


class InsufficientFunds(TxError):
    """The operator account cannot pay for gas; needs a human, not a retry loop."""


class RemoteError(BridgeError):
    """A Charity Engine API problem."""


class RemoteTransient(RemoteError):
    """5xx, 429, a timeout or a malformed body: the same request may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteRejected(RemoteError):
    """CE answered 4xx: the request itself is wrong and must not be retried."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RemoteAuthError(RemoteRejected):
    """CE answered 401: the authenticator is missing or unknown."""


class DownloadRefused(RemoteError):
    """An output file URL is off the configured CE host, or the file is over the size cap."""


class OutputTooLarge(DownloadRefused):
    """An output file is over its size cap (per file, or what is left of the job's total)."""


class SpecError(BridgeError):
    """A job spec the bridge cannot run; the job is failed on-chain with this message."""


class StoreError(BridgeError):
    """A database problem."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (refused, down, not accepting connections); worth retrying."""


class DatabaseBound(StoreError):
    """The database is bound to another (chain id, contract) than the one configured."""


class AlreadyRunning(StoreError):
    """Another ``ce-bridge run`` holds the lock this process needs (same SQLite file, or the same
    operator key on PostgreSQL)."""


class OperatorError(BridgeError):
    """An operator request the bridge refuses; the message says why, for the operator."""


class JobNotFound(OperatorError):
    """No job with this id is known to the bridge (or it has no such thing as was asked for)."""

    def __init__(self, job_id: int, message: str | None = None) -> None:
        super().__init__(message or f"job {job_id} not found")
        self.job_id = job_id


class JobConflict(OperatorError):
    """The job's state does not allow the requested action."""


class BridgeNotRunning(OperatorError):
    """The action needs a bridge (chain, CE, loops) running in this process, and there is none."""
