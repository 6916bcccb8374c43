"""User and admin operations on a JobEscrow: the service behind the CLI's chain commands.

``EscrowClient`` simulates every transaction with ``eth_call`` first, so a revert surfaces as a
``ContractRevert`` naming the contract's custom error and its arguments before any gas is spent;
"insufficient funds" becomes ``InsufficientFunds`` naming the account and its balance; a node
that cannot be reached becomes ``RpcUnavailable``. No message ever contains the signing key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from bridge.chain.address import checksum_address
from bridge.chain.artifacts import load_artifact
from bridge.chain.deploy import OPERATOR_ROLE, connect, escrow
from bridge.chain.revert import decode_revert, revert_data
from bridge.chain.spec import JobSpec, Status
from bridge.errors import BridgeError, ChainError, ConfigError, InsufficientFunds, RpcUnavailable
from bridge.logs import redact_url

T = TypeVar("T")


@dataclass(frozen=True)
class OnchainJob:
    """A job as ``getJob`` returns it."""

    job_id: int
    requester: str
    status: Status
    cancel_requested: bool
    deadline: int
    callback_gas_limit: int
    payment: int
    result_hash: bytes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (wei as a decimal string)."""
        return {
            "jobId": self.job_id,
            "requester": self.requester,
            "status": self.status.name.lower(),
            "cancelRequested": self.cancel_requested,
            "deadline": self.deadline,
            "callbackGasLimit": self.callback_gas_limit,
            "paymentWei": str(self.payment),
            "resultHash": "0x" + self.result_hash.hex(),
        }


def uint_fields(function: str) -> dict[str, int]:
    """The unsigned-integer inputs of JobEscrow's ``function`` and their largest value, by name.

    A struct argument is expanded into its fields (``setLimits`` gives ``maxVcpus`` ... and
    ``newDeadlineGrace``), read from the compiled ABI so the bounds follow the contract.
    """
    for entry in load_artifact("JobEscrow").abi:
        if entry.get("type") == "function" and entry.get("name") == function:
            found: dict[str, int] = {}
            for param in entry["inputs"]:
                for field in param.get("components") or [param]:
                    kind = str(field["type"])
                    if kind.startswith("uint") and kind[4:].isdigit():
                        found[str(field["name"])] = 2 ** int(kind[4:]) - 1
            return found
    raise KeyError(function)


def check_uint(name: str, value: int, maximum: int) -> None:
    """Raises ``ConfigError`` naming ``name`` unless ``0 <= value <= maximum``."""
    if not 0 <= value <= maximum:
        bits = maximum.bit_length()
        raise ConfigError(f"{name} must be between 0 and {maximum} (uint{bits}), got {value}")


class EscrowClient:
    """A JobEscrow at ``address`` on ``rpc_url``, signing with ``key`` (None: read-only)."""

    def __init__(self, rpc_url: str, address: str, key: str | None = None) -> None:
        """Connects and checks that a contract is deployed at ``address``.

        Raises:
            ConfigError: a bad address or key, or no contract at ``address``.
            RpcUnavailable: the node cannot be reached.
        """
        self.sender: ChecksumAddress | None = None
        if key is not None:
            try:
                self.sender = Account.from_key(key).address
            except Exception:  # eth-account raises several types; none may echo the key
                raise ConfigError("the signing key is not a valid private key") from None
        self.rpc_url = rpc_url
        self.w3 = connect(rpc_url, [key] if key else [])
        self.contract = escrow(self.w3, _checksum(address))
        chain_id = self._guard(lambda: self.w3.eth.chain_id)
        if not self._guard(lambda: self.w3.eth.get_code(self.contract.address)):
            raise ConfigError(
                f"no contract at {self.contract.address} on chain {chain_id}: "
                "check the address (--contract, BRIDGE_CONTRACT_ADDRESS) and the node"
            )

    # ------------------------------------------------------------------ reading

    def quote(self, spec: JobSpec, callback_gas: int = 0) -> int:
        """The minimum payment for ``spec``; a bad spec raises its custom error."""
        return int(
            self._guard(lambda: self.contract.functions.quote(spec.to_abi(), callback_gas).call())
        )

    def job(self, job_id: int) -> OnchainJob:
        """Job ``job_id``; raises ChainError if there is none."""
        raw = self._guard(lambda: self.contract.functions.getJob(job_id).call())
        job = OnchainJob(
            job_id, raw[0], Status(raw[1]), raw[2], raw[3], raw[4], raw[5], bytes(raw[6])
        )
        if job.status is Status.NONE:
            raise ChainError(f"job {job_id} does not exist")
        return job

    def jobs(self, requester: str | None = None, status: Status | None = None) -> list[OnchainJob]:
        """Every job (newest first), optionally only ``requester``'s or in ``status``."""
        last = int(self._guard(lambda: self.contract.functions.nextJobId().call())) - 1
        found = []
        for job_id in range(last, 0, -1):
            job = self.job(job_id)
            if requester and job.requester.lower() != requester.lower():
                continue
            if status is not None and job.status is not status:
                continue
            found.append(job)
        return found

    def credit(self, account: str) -> int:
        """Wei withdrawable by ``account``."""
        address = Web3.to_checksum_address(account)
        return int(self._guard(lambda: self.contract.functions.creditOf(address).call()))

    # ------------------------------------------------------------------ writing

    def submit(
        self, spec: JobSpec, callback_gas: int = 0, value: int | None = None
    ) -> tuple[int, int]:
        """Submits ``spec`` paying ``value`` (default: the quote); returns (job id, paid wei)."""
        price = self.quote(spec, callback_gas) if value is None else value
        fn = self.contract.functions.submitJob(spec.to_abi(), callback_gas)
        job_id = int(self._simulate(fn, price))
        self._send(fn, price)
        return job_id, price

    def cancel(self, job_id: int) -> None:
        """``cancelJob(job_id)``."""
        self._transact(self.contract.functions.cancelJob(job_id))

    def withdraw(self) -> int:
        """Withdraws the signer's credit; returns the amount."""
        assert self.sender is not None
        amount = self.credit(self.sender)
        self._transact(self.contract.functions.withdraw())
        return amount

    def pricing(self) -> dict[str, int]:
        """The current pricing, by the contract's field names (wei)."""
        values = self._guard(lambda: self.contract.functions.pricing().call())
        return dict(zip(PRICING_FIELDS, (int(v) for v in values), strict=True))

    def set_pricing(self, base_fee: int, per_vcpu_hour: int, per_callback_gas: int) -> None:
        """Admin: ``setPricing``. Raises ``ConfigError`` naming a value out of its uint range."""
        bounds = uint_fields("setPricing")
        prices = (base_fee, per_vcpu_hour, per_callback_gas)
        for name, value in zip(PRICING_FIELDS, prices, strict=True):
            check_uint(name, value, bounds[name])
        self._transact(
            self.contract.functions.setPricing((base_fee, per_vcpu_hour, per_callback_gas))
        )

    def limits(self) -> tuple[dict[str, int], int]:
        """The current limits (by field name) and the deadline grace in seconds."""
        values = self._guard(lambda: self.contract.functions.limits().call())
        grace = int(self._guard(lambda: self.contract.functions.deadlineGrace().call()))
        return dict(zip(LIMIT_FIELDS, (int(v) for v in values), strict=True)), grace

    def set_limits(self, limits: dict[str, int], grace: int) -> None:
        """Admin: ``setLimits`` with every field of ``LIMIT_FIELDS``.

        Raises:
            ConfigError: a value out of its field's uint range, named.
        """
        bounds = uint_fields("setLimits")
        for name in LIMIT_FIELDS:
            check_uint(name, limits[name], bounds[name])
        check_uint("deadlineGrace", grace, bounds["newDeadlineGrace"])
        values = tuple(limits[name] for name in LIMIT_FIELDS)
        self._transact(self.contract.functions.setLimits(values, grace))

    def set_treasury(self, treasury: str) -> None:
        """Admin: ``setTreasury``."""
        self._transact(self.contract.functions.setTreasury(_checksum(treasury)))

    def pause(self) -> None:
        """Admin: stop ``submitJob``."""
        self._transact(self.contract.functions.pause())

    def unpause(self) -> None:
        """Admin: allow ``submitJob`` again."""
        self._transact(self.contract.functions.unpause())

    def grant_operator(self, operator: str) -> None:
        """Admin: grant OPERATOR_ROLE to ``operator``."""
        self._transact(self.contract.functions.grantRole(OPERATOR_ROLE, _checksum(operator)))

    # ------------------------------------------------------------------ plumbing

    def _guard(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ContractCustomError, ContractLogicError) as exc:
            data = revert_data(exc)
            if data:
                raise decode_revert(data, self.contract.abi) from None
            raise ChainError(f"the contract reverted: {exc}") from None
        except BridgeError:
            raise
        except (Web3Exception, OSError, ValueError) as exc:
            text = str(exc).lower()
            if "insufficient funds" in text:
                raise self._insufficient() from None
            if isinstance(exc, OSError) or "connection" in exc.__class__.__name__.lower():
                raise RpcUnavailable(
                    f"cannot reach the JSON-RPC node at {redact_url(self.rpc_url)}"
                ) from None
            raise RpcUnavailable(
                f"the JSON-RPC node at {redact_url(self.rpc_url)} failed: {exc.__class__.__name__}"
            ) from None

    def _insufficient(self) -> InsufficientFunds:
        balance = self.w3.eth.get_balance(self.sender) if self.sender else 0
        return InsufficientFunds(
            f"account {self.sender} has {Web3.from_wei(balance, 'ether')} ETH: "
            "not enough for the payment and gas"
        )

    def _simulate(self, fn: Any, value: int = 0) -> Any:
        if self.sender is None:
            raise ConfigError("a signing key is needed (--key or BRIDGE_USER_KEY)")
        return self._guard(lambda: fn.call({"from": self.sender, "value": value}))

    def _send(self, fn: Any, value: int = 0) -> str:
        tx = self._guard(lambda: fn.transact({"from": self.sender, "value": value}))
        receipt = self._guard(lambda: self.w3.eth.wait_for_transaction_receipt(tx, timeout=180))
        if receipt["status"] != 1:
            raise ChainError(f"transaction 0x{bytes(tx).hex()} reverted")
        return "0x" + bytes(tx).hex()

    def _transact(self, fn: Any) -> str:
        self._simulate(fn)
        return self._send(fn)


LIMIT_FIELDS = (
    "maxVcpus",
    "maxRam",
    "maxDisk",
    "maxNetworkDownload",
    "maxNetworkUpload",
    "maxHours",
    "maxAppLength",
    "maxCommandLineLength",
    "maxInputFiles",
    "maxInputFileLength",
    "maxCallbackGasLimit",
)


PRICING_FIELDS = ("baseFee", "pricePerVcpuHour", "pricePerCallbackGas")


def _checksum(address: str) -> ChecksumAddress:
    try:
        return checksum_address(address)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
