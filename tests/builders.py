"""Builders for job specs and jobs, and small helpers for driving the escrow in tests.

Everything a test needs to make a spec, put a job on-chain, send a transaction and check its
events or its custom error (or to move a clock by hand) lives here, so the tests read as the
scenario they check. The typical spec (``spec()``) is also the benchmark's workload
(``bench/gas.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from eth_abi.abi import decode
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import EventData, RPCEndpoint, TxParams, TxReceipt, Wei

from bridge.chain.spec import InputFile, JobSpec, Resources, Status, spec_hash
from bridge.store.models import Job

TYPICAL_APP = "charityengine:wolframengine"
TYPICAL_COMMAND_LINE = 'math -run "Print[2+2]" > output/out.txt'
#: 40 characters, as the issue's typical spec.
TYPICAL_INPUT_URL = "https://example.org/inputs/data-0001.csv"
TYPICAL_INPUT_FILENAME = "data.csv"
ZERO_HASH = b"\x00" * 32

_RESOURCE_FIELDS = {f.name for f in dataclasses.fields(Resources)}


def spec(**overrides: Any) -> JobSpec:
    """The typical job spec, with any field replaced.

    Keyword arguments name a ``JobSpec`` field (``app``, ``command_line``, ``specs``,
    ``max_hours``, ``input_files``) or a ``Resources`` field (``vcpus``, ``ram``, ``disk``,
    ``network_download``, ``network_upload``), e.g. ``spec(vcpus=4, input_files=())``.

    The typical spec: app ``charityengine:wolframengine``, command line
    ``math -run "Print[2+2]" > output/out.txt``, 2 vcpus, 512 MB of RAM and disk, 1 hour, one
    input file with a 40-character URL.
    """
    resources = {k: overrides.pop(k) for k in list(overrides) if k in _RESOURCE_FIELDS}
    base = JobSpec(
        app=TYPICAL_APP,
        command_line=TYPICAL_COMMAND_LINE,
        specs=Resources(vcpus=2, ram=512, disk=512),
        max_hours=1,
        input_files=(InputFile(TYPICAL_INPUT_FILENAME, TYPICAL_INPUT_URL),),
    )
    built = dataclasses.replace(base, **overrides)
    if resources:
        built = dataclasses.replace(built, specs=dataclasses.replace(built.specs, **resources))
    return built


def result_hash(seed: str) -> bytes:
    """A deterministic non-zero 32-byte result hash for ``seed``."""
    return hashlib.sha256(seed.encode()).digest()


def update(
    job_id: int, status: int, result: bytes = ZERO_HASH, data: str = ""
) -> tuple[int, int, bytes, str]:
    """One ``IJobEscrow.Update`` item for ``applyUpdates``; ``status`` may be out of range."""
    return (job_id, int(status), result, data)


def stored_job(job_id: int, **overrides: Any) -> Job:
    """A ``Job`` row as the scanner stores it for a ``JobSubmitted`` of the typical spec (state
    ``new``, on-chain ``Submitted``), with any column replaced, e.g. ``stored_job(3,
    state="settled", onchain_status=Status.COMPLETED)``."""
    from bridge.chain.submitted import spec_encoding

    typical = spec()
    columns: dict[str, Any] = {
        "job_id": job_id,
        "requester": Web3.to_checksum_address("0x" + "ab" * 20),
        "spec_abi": spec_encoding(typical),
        "spec_hash": "0x" + spec_hash(typical).hex(),
        "payment_wei": str(10**15),
        "deadline": 2_000_000_000,
        "block_number": 100 + job_id,
        "block_hash": "0x" + f"{job_id:064x}",
        "tx_hash": "0x" + f"{job_id + 1:064x}",
        "log_index": 0,
        **overrides,
    }
    columns["requester"] = Web3.to_checksum_address(columns["requester"])  # as the reader does
    if isinstance(columns.get("onchain_status"), Status):
        columns["onchain_status"] = int(columns["onchain_status"])
    return Job(**columns)


class Clock:
    """A settable clock (seconds, monotonic or epoch alike) that tests move by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ accounts


@dataclass(frozen=True)
class Accounts:
    """Anvil's ten default accounts under the roles the tests give them.

    ``keys[i]`` and ``addresses[i]`` are Anvil's account ``i``: 0 admin, 1 operator, 2 user,
    3 other (a third party), 4 treasury, 5 a second operator key (not granted by default),
    6..9 spare.
    """

    keys: tuple[str, ...]
    addresses: tuple[ChecksumAddress, ...]

    @property
    def admin(self) -> ChecksumAddress:
        """Holds DEFAULT_ADMIN_ROLE on the deployed escrow and deployed it."""
        return self.addresses[0]

    @property
    def operator(self) -> ChecksumAddress:
        """Holds OPERATOR_ROLE on the deployed escrow (the bridge's key)."""
        return self.addresses[1]

    @property
    def user(self) -> ChecksumAddress:
        """Submits jobs; owns the deployed ExampleConsumer."""
        return self.addresses[2]

    @property
    def other(self) -> ChecksumAddress:
        """A third party with no role (e.g. reclaims expired jobs, tries what it may not)."""
        return self.addresses[3]

    @property
    def treasury(self) -> ChecksumAddress:
        """Receives the earnings of completed jobs."""
        return self.addresses[4]

    @property
    def operator2(self) -> ChecksumAddress:
        """A second operator key, not granted OPERATOR_ROLE by the fixtures."""
        return self.addresses[5]

    @property
    def spare(self) -> tuple[ChecksumAddress, ...]:
        """Accounts 6..9, unused by the fixtures."""
        return self.addresses[6:]

    def key(self, address: str) -> str:
        """The private key (0x-hex) of ``address``."""
        return self.keys[self.addresses.index(Web3.to_checksum_address(address))]


@dataclass(frozen=True)
class Deployment:
    """The contracts the session deployed: addresses and the block the escrow was deployed in."""

    escrow: ChecksumAddress
    consumer: ChecksumAddress
    block: int


# ------------------------------------------------------------------ transactions


def send(
    w3: Web3, fn: ContractFunction, sender: ChecksumAddress, value: int = 0, gas: int | None = None
) -> TxReceipt:
    """Sends ``fn`` from ``sender`` and returns its receipt once mined; fails the test on revert."""
    params: TxParams = {"from": sender, "value": Wei(value)}
    if gas is not None:
        params["gas"] = gas
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact(params), timeout=60)
    assert receipt["status"] == 1, f"transaction reverted: {receipt['transactionHash'].hex()}"
    return receipt


def gas_cost(receipt: TxReceipt) -> int:
    """Wei the sender paid for gas in ``receipt``."""
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def events(contract: Contract, receipt: TxReceipt, name: str) -> list[EventData]:
    """The ``name`` events that ``contract`` (by address) emitted in ``receipt``, decoded."""
    own = {
        **receipt,
        "logs": [log for log in receipt["logs"] if log["address"] == contract.address],
    }
    event = contract.events[name]()
    return list(event.process_receipt(cast(TxReceipt, own), errors=DISCARD))


def submit_job(
    w3: Web3,
    escrow: Contract,
    sender: ChecksumAddress,
    job_spec: JobSpec | None = None,
    callback_gas_limit: int = 0,
    value: int | None = None,
) -> tuple[int, TxReceipt]:
    """Submits ``job_spec`` (the typical one by default) from an account, paying the quote.

    Returns:
        The new job id and the submission's receipt.
    """
    abi_spec = (job_spec or spec()).to_abi()
    price = escrow.functions.quote(abi_spec, callback_gas_limit).call() if value is None else value
    receipt = send(w3, escrow.functions.submitJob(abi_spec, callback_gas_limit), sender, price)
    (submitted,) = events(escrow, receipt, "JobSubmitted")
    return int(submitted["args"]["jobId"]), receipt


def submit_via_consumer(
    w3: Web3,
    escrow: Contract,
    consumer: Contract,
    owner: ChecksumAddress,
    job_spec: JobSpec | None = None,
    callback_gas_limit: int = 50_000,
) -> tuple[int, TxReceipt]:
    """Submits through an ExampleConsumer (the consumer is the requester and gets the callback).

    Returns:
        The new job id and the receipt of the owner's ``ExampleConsumer.submit`` transaction.
    """
    abi_spec = (job_spec or spec()).to_abi()
    price = escrow.functions.quote(abi_spec, callback_gas_limit).call()
    receipt = send(w3, consumer.functions.submit(abi_spec, callback_gas_limit), owner, price)
    (submitted,) = events(escrow, receipt, "JobSubmitted")
    return int(submitted["args"]["jobId"]), receipt


def get_job(escrow: Contract, job_id: int) -> dict[str, Any]:
    """``getJob(job_id)`` as a dict keyed by the ``Job`` field names, status as a ``Status``."""
    (abi,) = [e for e in escrow.abi if e.get("type") == "function" and e.get("name") == "getJob"]
    names = [c["name"] for c in cast(dict[str, Any], abi)["outputs"][0]["components"]]
    job = dict(zip(names, escrow.functions.getJob(job_id).call(), strict=True))
    job["status"] = Status(job["status"])
    return job


def status_of(escrow: Contract, job_id: int) -> Status:
    """The job's status as ``getJob`` reports it."""
    return Status(get_job(escrow, job_id)["status"])


# ------------------------------------------------------------------ custom errors


def error_selector(signature: str) -> bytes:
    """The 4-byte selector of a custom error, e.g. ``error_selector("JobNotFound(uint256)")``."""
    return bytes(Web3.keccak(text=signature)[:4])


@dataclass
class Revert:
    """What ``reverts_with`` caught: the error's signature and its decoded arguments."""

    signature: str
    args: tuple[Any, ...] = field(default_factory=tuple)


def _argument_types(signature: str) -> list[str]:
    inner = signature[signature.index("(") + 1 : signature.rindex(")")]
    return [t for t in inner.split(",") if t]


def _revert_data(exc: ContractCustomError) -> bytes:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data", "")
    assert isinstance(data, str), f"no revert data in {exc!r}"
    return bytes(HexBytes(data))


class _RevertContext:
    """Context manager behind ``reverts_with``."""

    def __init__(self, signature: str) -> None:
        self.revert = Revert(signature)
        self._raises = pytest.raises(ContractCustomError)

    def __enter__(self) -> Revert:
        self._raises.__enter__()
        return self.revert

    def __exit__(self, *exc_info: Any) -> bool:
        if not self._raises.__exit__(*exc_info):
            return False  # another exception: let it propagate as it is
        caught = self._raises.excinfo
        assert caught is not None
        data = _revert_data(caught.value)
        expected = error_selector(self.revert.signature)
        assert data[:4] == expected, (
            f"reverted with selector 0x{data[:4].hex()}, expected {self.revert.signature} "
            f"(0x{expected.hex()})"
        )
        self.revert.args = tuple(decode(_argument_types(self.revert.signature), data[4:]))
        return True


def reverts_with(signature: str) -> _RevertContext:
    """Asserts that the block raises the custom error ``signature`` (checked by its selector).

    Usage::

        with reverts_with("InvalidTransition(uint256,uint8,uint8)") as revert:
            escrow.functions.cancelJob(job_id).transact({"from": user})
        assert revert.args == (job_id, Status.COMPLETED, Status.CANCELLED)

    web3 raises ``ContractCustomError`` when gas estimation (or a call) reverts with a custom error;
    its data is the selector followed by the ABI-encoded arguments, decoded here from the
    signature's types (enums are ``uint8``).
    """
    return _RevertContext(signature)


# ------------------------------------------------------------------ time


def increase_time(w3: Web3, seconds: int) -> int:
    """Moves Anvil's clock forward by ``seconds`` and mines a block; returns its timestamp."""
    w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [seconds])
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    return int(w3.eth.get_block("latest")["timestamp"])
