"""Gas report of JobEscrow: what each step of a job costs, measured on a local Anvil.

Run ``.venv/bin/python -m bench.gas`` from the repository root. It starts its own Anvil, deploys
JobEscrow and ExampleConsumer from ``abi/``, drives jobs through their lives, reads ``gasUsed`` from
the receipts, traces a few transactions to show where their gas goes, prints the tables and writes
``docs/GAS.md`` (``--no-write`` only prints; ``--json`` prints the figures as JSON).

Reuse (a later benchmark compares these figures with Chainlink's and API3's):

- ``run()`` -> ``dict[str, int]``: every figure of ``FIGURES`` measured on a fresh Anvil.
- ``measure(w3, roles)`` does the same on any node that signs for ``roles`` and returns a
  ``Measurement`` (the figures plus the hashes of the representative transactions).
- ``breakdown(w3, tx_hash, frames)`` splits one transaction's ``gasUsed`` into cost categories
  from a ``debug_traceTransaction`` opcode trace (Anvil needs ``--steps-tracing``).

Every figure is a receipt's ``gasUsed`` (so it includes the 21,000 intrinsic gas and calldata), or
such a figure divided by the number of jobs in a batch. The figures are deterministic for a given
artifact, workload and hardfork; the bench fixes the workload (``workload()``, the typical spec of
``tests/builders.py``) and records the other two in the report.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import RPCEndpoint, TxParams, TxReceipt, Wei

from bridge.chain.artifacts import ABI_DIR, REPO_ROOT, SOURCES, build_artifacts
from bridge.chain.deploy import connect, deploy, deploy_escrow
from bridge.chain.deploy import consumer as consumer_at
from bridge.chain.deploy import escrow as escrow_at
from bridge.chain.spec import JobSpec, Status
from bridge.devchain import Anvil, anvil_binary, anvil_key
from tests.builders import spec as typical_spec

COMMAND = ".venv/bin/python -m bench.gas"
REPORT_PATH = REPO_ROOT / "docs" / "GAS.md"
BATCH_SIZES = (1, 10, 50)
#: Gas the ExampleConsumer's callback may use (its one new slot needs ~23,000).
CALLBACK_GAS_LIMIT = 30_000
#: A spec with ~35 bytes of strings and no input file, the size of the references' payloads.
SMALL_SPEC = typical_spec(
    app="charityengine:echo", command_line="echo 4 > output/o", input_files=()
)

# Gas schedule (Berlin .. Osaka) the analysis refers to.
G_TX = 21_000
G_NEW_SLOT = 22_100  # SSTORE zero -> non-zero (20,000) on a cold slot (2,100)
G_CALL_VALUE = 9_000  # a CALL that transfers value; the callee gets a 2,300 stipend of it back
G_STIPEND = 2_300
G_COLD_ACCOUNT = 2_600
G_COLD_SLOAD = 2_100
G_LOG_BYTE = 8


@dataclass(frozen=True)
class Roles:
    """The accounts the bench uses."""

    admin: ChecksumAddress
    operator: ChecksumAddress
    user: ChecksumAddress
    treasury: ChecksumAddress
    keys: tuple[str, ...]

    @classmethod
    def anvil_defaults(cls) -> Roles:
        """Anvil's keys: admin 0, operator 1, user 2, treasury 4 (as in tests/conftest.py)."""
        keys = tuple(anvil_key(i) for i in range(5))
        addresses = [Web3.to_checksum_address(Account.from_key(k).address) for k in keys]
        return cls(
            admin=addresses[0],
            operator=addresses[1],
            user=addresses[2],
            treasury=addresses[4],
            keys=keys,
        )


@dataclass(frozen=True)
class Target:
    """A gas target from the contract issue: figure ``figure`` must be at most ``limit``."""

    label: str
    figure: str
    limit: int
    aim: int | None = None


TARGETS = (
    Target("submitJob, typical spec", "submitJob", 100_000),
    Target(
        "accept + complete per job, batches of 50, no callback", "acceptComplete.batch50", 40_000
    ),
    Target(
        "whole life with a one-slot callback, per job",
        "life.consumerCallback.batch50",
        140_000,
        aim=128_000,
    ),
)

#: Reference figures on the same kind of chain for a ~30-byte payload (from the issue).
REFERENCES = (
    ("Chainlink Operator, request + fulfill", "~170,000"),
    ("API3 AirnodeRrpV0, request + fulfill", "~128,600"),
)

#: Figures of the contract before the money rules and hostile-requester fixes of issue 9 (this bench
#: on commit 16827a6, the same compiler, node and workload), to show what those rules cost.
BEFORE_MONEY_RULES: dict[str, int] = {
    "submitJob": 95_606,
    "markRunning": 31_127,
    "completeJob": 48_890,
    "failJob": 40_716,
    "acceptComplete.batch50": 27_880,
    "applyUpdates.completeCallback.batch50": 40_911,
    "life.consumerCallback.batch50": 159_699,
}

#: Every figure ``measure`` returns, with what it is.
FIGURES: dict[str, str] = {
    "submitJob.first": "submitJob, typical spec, the deployment's first job",
    "submitJob": "submitJob, typical spec (not the first job)",
    "consumer.submit": "ExampleConsumer.submit -> submitJob with a callback (value-bearing call)",
    "acceptJob": "acceptJob",
    "markRunning": "markRunning",
    "completeJob": "completeJob, no callback (treasury credit slot already non-zero)",
    "completeJob.callback": "completeJob with the ExampleConsumer callback storing one slot",
    "failJob.firstCredit": "failJob, the requester's first credit (a new slot)",
    "failJob": "failJob, the requester already has a credit",
    "submitJob.overpay": "submitJob paying 1 wei above the quote (credited back to a credit slot)",
    "failJob.callback": (
        "failJob with the ExampleConsumer callback (refund less the callback fee, fee to treasury)"
    ),
    "cancelRunning.batch1": (
        "applyUpdates Cancelled of a Running job, batch of 1 (refund less base fee and hours)"
    ),
    "life.single": "submit + acceptJob + markRunning + completeJob, single calls, no callback",
    **{
        f"applyUpdates.{kind}.batch{n}": f"applyUpdates {kind}, batch of {n}, per job"
        for n in BATCH_SIZES
        for kind in ("accept", "complete")
    },
    "applyUpdates.completeCallback.batch50": (
        "applyUpdates complete with the one-slot callback, batch of 50, per job"
    ),
    "acceptComplete.batch50": "accept + complete per job, applyUpdates batches of 50, no callback",
    "life.eoa.batch50": "(a) EOA submit + batched(50) accept + batched(50) complete, per job",
    "life.consumerCallback.batch50": (
        "(b) submit through ExampleConsumer + batched(50) accept + batched(50) complete with the "
        "one-slot callback, per job"
    ),
    "applyUpdates.completeCallbackFromSubmitted.batch50": (
        "applyUpdates Submitted -> Completed (no accept write) with the callback, batch of 50, "
        "per job"
    ),
    "life.consumerCallback.noAccept.batch50": (
        "(b) without the accept write: consumer submit + batched(50) complete with the callback"
    ),
    "submitJob.smallSpec": "submitJob, a ~35-byte spec with no input file",
    "consumer.submit.smallSpec": "ExampleConsumer.submit, the ~35-byte spec",
    "life.consumerCallback.batch50.smallSpec": "(b) with the ~35-byte spec",
    "life.consumerCallback.noAccept.batch50.smallSpec": (
        "(b) with the ~35-byte spec and without the accept write"
    ),
    "bytes.submitCalldata": "bytes of submitJob calldata (typical spec)",
    "bytes.specLog": "bytes of JobSubmitted log data (typical spec)",
}


def workload() -> dict[str, str]:
    """The strings the operator writes, shaped as the bridge writes them (fixed: stable figures)."""
    return {
        # CE ids as the emulator makes them (uuid4().hex): 32 characters.
        "remoteJobId": uuid.UUID(int=0x5EED_5EED_5EED_5EED_5EED_5EED_5EED_5EED).hex,
        # bridge.engine: f"{public_url}/jobs/{job_id}/outputs/"
        "resultURI": "https://bridge.example.org/jobs/{job_id}/outputs/",
        "failReason": "CE rejected the job: unknown app",
    }


# ------------------------------------------------------------------ driving the contracts


def _send(
    w3: Web3, fn: ContractFunction, sender: ChecksumAddress, value: int = 0, extra_gas: int = 0
) -> TxReceipt:
    params: TxParams = {"from": sender, "value": Wei(value)}
    if extra_gas:
        params["gas"] = fn.estimate_gas(params) + extra_gas
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact(params), timeout=120)
    if receipt["status"] != 1:
        raise RuntimeError(f"benchmark transaction reverted: {receipt['transactionHash'].hex()}")
    return receipt


def _job_id(escrow: Contract, receipt: TxReceipt) -> int:
    topic = HexBytes(escrow.events.JobSubmitted().topic)
    for log in receipt["logs"]:
        if log["address"] == escrow.address and log["topics"][0] == topic:
            return int.from_bytes(log["topics"][1], "big")
    raise RuntimeError("no JobSubmitted in the receipt")


def _result_hash(job_id: int) -> bytes:
    return bytes(Web3.keccak(text=f"result {job_id}"))


class _Driver:
    """Sends the bench's transactions; each method returns the receipt's gasUsed."""

    def __init__(self, w3: Web3, escrow: Contract, consumer: Contract, roles: Roles) -> None:
        self.w3 = w3
        self.escrow = escrow
        self.consumer = consumer
        self.roles = roles
        self.strings = workload()
        self.last: TxReceipt | None = None

    @property
    def last_hash(self) -> HexBytes:
        """The hash of the last transaction sent."""
        assert self.last is not None
        return HexBytes(self.last["transactionHash"])

    def _gas(
        self, fn: ContractFunction, sender: ChecksumAddress, value: int = 0, extra_gas: int = 0
    ) -> int:
        self.last = _send(self.w3, fn, sender, value, extra_gas)
        return int(self.last["gasUsed"])

    def _price(self, job_spec: JobSpec, callback_gas_limit: int) -> int:
        price: int = self.escrow.functions.quote(job_spec.to_abi(), callback_gas_limit).call()
        return price

    def submit(self, job_spec: JobSpec | None = None) -> tuple[int, int]:
        """An EOA submission (the typical spec by default): (job id, gas)."""
        job_spec = job_spec or typical_spec()
        fn = self.escrow.functions.submitJob(job_spec.to_abi(), 0)
        gas = self._gas(fn, self.roles.user, self._price(job_spec, 0))
        assert self.last is not None
        return _job_id(self.escrow, self.last), gas

    def submit_via_consumer(self, job_spec: JobSpec | None = None) -> tuple[int, int]:
        """A submission through ExampleConsumer, with a callback: (job id, gas)."""
        job_spec = job_spec or typical_spec()
        fn = self.consumer.functions.submit(job_spec.to_abi(), CALLBACK_GAS_LIMIT)
        gas = self._gas(fn, self.roles.user, self._price(job_spec, CALLBACK_GAS_LIMIT))
        assert self.last is not None
        return _job_id(self.escrow, self.last), gas

    def accept(self, job_id: int) -> int:
        """``acceptJob``."""
        fn = self.escrow.functions.acceptJob(job_id, self.strings["remoteJobId"])
        return self._gas(fn, self.roles.operator)

    def running(self, job_id: int) -> int:
        """``markRunning``."""
        return self._gas(self.escrow.functions.markRunning(job_id), self.roles.operator)

    def complete(self, job_id: int) -> int:
        """``completeJob``."""
        uri = self.strings["resultURI"].format(job_id=job_id)
        fn = self.escrow.functions.completeJob(job_id, _result_hash(job_id), uri)
        return self._gas(fn, self.roles.operator)

    def overpay(self) -> int:
        """An EOA submission of the typical spec paying 1 wei above the quote: its gas."""
        job_spec = typical_spec()
        fn = self.escrow.functions.submitJob(job_spec.to_abi(), 0)
        return self._gas(fn, self.roles.user, self._price(job_spec, 0) + 1)

    def cancel(self, job_id: int) -> int:
        """The requester's ``cancelJob``."""
        return self._gas(self.escrow.functions.cancelJob(job_id), self.roles.user)

    def operator_cancel(self, job_id: int) -> int:
        """``applyUpdates`` with one Cancelled item."""
        item = (job_id, int(Status.CANCELLED), b"\x00" * 32, "cancelled remotely")
        return self._gas(self.escrow.functions.applyUpdates([item]), self.roles.operator)

    def fail(self, job_id: int) -> int:
        """``failJob``."""
        fn = self.escrow.functions.failJob(job_id, self.strings["failReason"])
        return self._gas(fn, self.roles.operator)

    def batch(self, job_ids: Sequence[int], status: Status) -> int:
        """``applyUpdates`` moving every job of ``job_ids`` to ``status``; none may be skipped."""
        items = []
        # eth_estimateGas finds the gas at which the contract skips the callback items, as the
        # bridge's transaction manager knows: it adds what each callback item needs.
        extra = 0
        for job_id in job_ids:
            if status == Status.ACCEPTED:
                items.append((job_id, int(status), b"\x00" * 32, self.strings["remoteJobId"]))
            else:
                uri = self.strings["resultURI"].format(job_id=job_id)
                items.append((job_id, int(status), _result_hash(job_id), uri))
                limit = int(self.escrow.functions.getJob(job_id).call()[4])
                if limit:
                    extra += limit + limit // 63 + 45_000 + 16 * len(uri)
        fn = self.escrow.functions.applyUpdates(items)
        gas = self._gas(fn, self.roles.operator, extra_gas=extra)
        assert self.last is not None
        skipped = HexBytes(self.escrow.events.UpdateSkipped().topic)
        if any(log["topics"][0] == skipped for log in self.last["logs"]):
            raise RuntimeError(f"a benchmark update to {status.name} was skipped")
        return gas


# ------------------------------------------------------------------ measurements


@dataclass(frozen=True)
class Measurement:
    """The figures of one run and the transactions worth tracing.

    ``txs`` maps a name to (transaction hash, jobs in it, depth -> contract name of its frames).
    """

    figures: dict[str, int]
    txs: dict[str, tuple[HexBytes, int, dict[int, str]]] = field(default_factory=dict)


def measure(w3: Web3, roles: Roles) -> Measurement:
    """Deploys fresh contracts on ``w3`` and measures every figure of ``FIGURES``.

    ``w3`` must sign for ``roles``' accounts (``bridge.chain.deploy.connect(url, roles.keys)``),
    which need ETH for gas and a few hundred jobs' payments (~0.3 ETH).

    Returns:
        The figures (gas; per job for batch figures, rounded down; two byte counts) and the
        representative transactions.
    """
    escrow = escrow_at(
        w3, deploy_escrow(w3, roles.admin, operators=[roles.operator], treasury=roles.treasury)
    )
    consumer = consumer_at(w3, deploy(w3, "ExampleConsumer", roles.user, escrow.address))
    d = _Driver(w3, escrow, consumer, roles)
    fig: dict[str, int] = {}
    escrow_first = {1: "JobEscrow", 2: "ExampleConsumer"}
    consumer_first = {1: "ExampleConsumer", 2: "JobEscrow"}
    txs: dict[str, tuple[HexBytes, int, dict[int, str]]] = {}

    # Single calls. Each job has its own two slots and the job counter shares an always non-zero
    # slot, so the first job costs the same as later ones; it is reported apart to show that.
    first, fig["submitJob.first"] = d.submit()
    job, fig["submitJob"] = d.submit()
    txs["submitJob"] = (d.last_hash, 1, escrow_first)
    assert d.last is not None
    fig["bytes.submitCalldata"] = len(w3.eth.get_transaction(d.last_hash)["input"])
    (log,) = [x for x in d.last["logs"] if x["address"] == escrow.address]
    fig["bytes.specLog"] = len(log["data"])

    fig["acceptJob"] = d.accept(job)
    fig["markRunning"] = d.running(job)
    d.complete(first)  # the treasury's credit slot becomes non-zero: the steady state
    fig["completeJob"] = d.complete(job)
    fig["life.single"] = (
        fig["submitJob"] + fig["acceptJob"] + fig["markRunning"] + fig["completeJob"]
    )

    fail_first, _ = d.submit()
    fail_warm, _ = d.submit()
    fig["failJob.firstCredit"] = d.fail(fail_first)
    fig["failJob"] = d.fail(fail_warm)
    fig["submitJob.overpay"] = d.overpay()
    running, _ = d.submit()
    d.accept(running)
    d.running(running)
    d.cancel(running)
    fig["cancelRunning.batch1"] = d.operator_cancel(running)

    d.submit_via_consumer()
    callback_job, fig["consumer.submit"] = d.submit_via_consumer()
    txs["consumer.submit"] = (d.last_hash, 1, consumer_first)
    d.accept(callback_job)
    fig["completeJob.callback"] = d.complete(callback_job)
    fail_callback, _ = d.submit_via_consumer()
    fig["failJob.callback"] = d.fail(fail_callback)

    # Batches: n fresh jobs accepted in one applyUpdates, then completed in another.
    for n in BATCH_SIZES:
        jobs = [d.submit()[0] for _ in range(n)]
        fig[f"applyUpdates.accept.batch{n}"] = d.batch(jobs, Status.ACCEPTED) // n
        txs[f"applyUpdates.accept.batch{n}"] = (d.last_hash, n, escrow_first)
        fig[f"applyUpdates.complete.batch{n}"] = d.batch(jobs, Status.COMPLETED) // n
        txs[f"applyUpdates.complete.batch{n}"] = (d.last_hash, n, escrow_first)
    fig["acceptComplete.batch50"] = (
        fig["applyUpdates.accept.batch50"] + fig["applyUpdates.complete.batch50"]
    )

    callback_jobs = [d.submit_via_consumer()[0] for _ in range(50)]
    accept_callback = d.batch(callback_jobs, Status.ACCEPTED) // 50
    txs["applyUpdates.acceptCallbackJobs.batch50"] = (d.last_hash, 50, escrow_first)
    fig["applyUpdates.completeCallback.batch50"] = d.batch(callback_jobs, Status.COMPLETED) // 50
    txs["applyUpdates.completeCallback.batch50"] = (d.last_hash, 50, escrow_first)
    results = [consumer.functions.results(j).call() for j in (callback_job, *callback_jobs)]
    if any(r == b"\x00" * 32 for r in results):
        raise RuntimeError("a consumer callback did not store its result")

    fig["life.eoa.batch50"] = fig["submitJob"] + fig["acceptComplete.batch50"]
    fig["life.consumerCallback.batch50"] = (
        fig["consumer.submit"] + accept_callback + fig["applyUpdates.completeCallback.batch50"]
    )

    # The operator may skip the accept write (Submitted -> Completed is a valid move).
    direct_jobs = [d.submit_via_consumer()[0] for _ in range(50)]
    fig["applyUpdates.completeCallbackFromSubmitted.batch50"] = (
        d.batch(direct_jobs, Status.COMPLETED) // 50
    )
    fig["life.consumerCallback.noAccept.batch50"] = (
        fig["consumer.submit"] + fig["applyUpdates.completeCallbackFromSubmitted.batch50"]
    )

    d.submit(SMALL_SPEC)
    fig["submitJob.smallSpec"] = d.submit(SMALL_SPEC)[1]
    fig["consumer.submit.smallSpec"] = d.submit_via_consumer(SMALL_SPEC)[1]
    fig["life.consumerCallback.batch50.smallSpec"] = (
        fig["consumer.submit.smallSpec"]
        + accept_callback
        + fig["applyUpdates.completeCallback.batch50"]
    )
    fig["life.consumerCallback.noAccept.batch50.smallSpec"] = (
        fig["consumer.submit.smallSpec"] + fig["applyUpdates.completeCallbackFromSubmitted.batch50"]
    )
    return Measurement(figures={k: fig[k] for k in FIGURES}, txs=txs)


def run() -> dict[str, int]:
    """Starts an Anvil, measures every figure of ``FIGURES`` on it, stops it."""
    roles = Roles.anvil_defaults()
    with Anvil() as node:
        return measure(connect(node.url, roles.keys), roles).figures


# ------------------------------------------------------------------ where the gas goes

CATEGORIES = (
    "intrinsic (21,000 a transaction)",
    "calldata (4 a zero byte, 16 a non-zero byte)",
    "new storage slots (22,100 each, cold read included)",
    "other storage writes (2,900 or 100)",
    "other cold storage reads (2,100)",
    "LOG (375 + 375 a topic + 8 a byte)",
    "CALL (value 9,000 - 2,300 stipend; address 2,600 cold, 100 warm)",
    "cold account access (EXTCODESIZE: 2,600)",
    "KECCAK256",
    "transient storage (reentrancy guard)",
    "everything else (ABI decoding and encoding, checks, memory, jumps)",
    "gas refund",
)
_CALLS = {"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL"}
_ACCOUNT = {"EXTCODESIZE", "EXTCODEHASH", "EXTCODECOPY", "BALANCE"}


def _category(op: str, cost: int) -> str:
    if op == "SSTORE":
        return CATEGORIES[2] if cost >= 20_000 else CATEGORIES[3]
    if op == "SLOAD":
        return CATEGORIES[4] if cost >= G_COLD_SLOAD else CATEGORIES[10]
    if op.startswith("LOG"):
        return CATEGORIES[5]
    if op in _CALLS:
        return CATEGORIES[6]
    if op in _ACCOUNT:
        return CATEGORIES[7] if cost >= G_COLD_ACCOUNT else CATEGORIES[10]
    if op == "KECCAK256":
        return CATEGORIES[8]
    if op in {"TLOAD", "TSTORE"}:
        return CATEGORIES[9]
    return CATEGORIES[10]


def _exclusive_costs(steps: Sequence[Mapping[str, Any]]) -> list[int]:
    """Gas each step cost itself: a CALL's cost excludes what its callee spent."""
    costs = [int(s["gasCost"]) for s in steps]
    for i, step in enumerate(steps):
        if step["op"] not in _CALLS or i + 1 >= len(steps):
            continue
        depth = step["depth"]
        if steps[i + 1]["depth"] != depth + 1:  # no code ran (an EOA or a precompile)
            costs[i] = int(step["gas"]) - int(steps[i + 1]["gas"])
            continue
        j = i + 1
        while j < len(steps) and steps[j]["depth"] > depth:
            j += 1
        last = steps[j - 1]
        callee_used = int(steps[i + 1]["gas"]) - (int(last["gas"]) - int(last["gasCost"]))
        after = int(steps[j]["gas"]) if j < len(steps) else int(last["gas"])
        costs[i] = int(step["gas"]) - after - callee_used
    return costs


def breakdown(w3: Web3, tx_hash: HexBytes, frames: Mapping[int, str]) -> dict[str, int]:
    """Splits the ``gasUsed`` of ``tx_hash`` into ``CATEGORIES`` (keys suffixed by the contract).

    Uses ``debug_traceTransaction`` (Anvil must run with ``--steps-tracing``). ``frames`` names the
    contract executing at each call depth; a category is suffixed with `` [name]`` unless the
    contract is JobEscrow. The values sum to the receipt's ``gasUsed`` exactly.
    """
    reply = w3.provider.make_request(
        RPCEndpoint("debug_traceTransaction"),
        [tx_hash.to_0x_hex(), {"disableStack": True, "disableStorage": True}],
    )
    steps: list[dict[str, Any]] = reply["result"]["structLogs"]
    if not steps:
        raise RuntimeError("empty trace: start Anvil with --steps-tracing")
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    data = bytes(w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    calldata = 4 * zeros + 16 * (len(data) - zeros)

    out: Counter[str] = Counter()
    costs = _exclusive_costs(steps)
    new_slots_after_read = 0
    for step, cost in zip(steps, costs, strict=True):
        name = frames.get(int(step["depth"]), f"depth {step['depth']}")
        category = _category(str(step["op"]), cost)
        if step["op"] == "SSTORE" and cost == 20_000:
            new_slots_after_read += 1  # its cold read was an SLOAD just before
            out[f"{CATEGORIES[4]}@{name}"] -= G_COLD_SLOAD
            cost += G_COLD_SLOAD
        out[f"{category}@{name}"] += cost
    executed = sum(costs)
    out[CATEGORIES[0] + "@"] = G_TX
    out[CATEGORIES[1] + "@"] = calldata
    refund = G_TX + calldata + executed - int(receipt["gasUsed"])
    out[CATEGORIES[11] + "@"] = -refund
    if refund < 0 or refund > int(steps[-1]["refund"]):
        raise RuntimeError(f"trace of {tx_hash.to_0x_hex()} does not add up (refund {refund})")
    result: dict[str, int] = {}
    for key, value in out.items():
        category, name = key.split("@")
        label = category if name in ("", "JobEscrow") else f"{category} [{name}]"
        if value:
            result[label] = result.get(label, 0) + value
    return result


def _per_job(parts: Sequence[tuple[dict[str, int], int]]) -> dict[str, float]:
    """Sums breakdowns, each divided by its number of jobs."""
    total: dict[str, float] = {}
    for part, jobs in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value / jobs
    return total


# ------------------------------------------------------------------ a variant of the contract


def measure_plain_emit_variant(w3: Web3, roles: Roles) -> int | None:
    """submitJob gas of JobEscrow built with a plain ``emit JobSubmitted(... keccak256(abi.encode(
    spec)) ...)`` instead of its in-place hashing; None when the source no longer has that shape.

    Compiles a patched copy in a temporary directory with the same compiler and settings.
    """
    call = "_emitJobSubmitted(jobId, price, deadline, spec, callbackGasLimit);"
    plain = (
        "emit JobSubmitted(jobId, msg.sender, keccak256(abi.encode(spec)), price, deadline,"
        " spec, callbackGasLimit);"
    )
    source = (REPO_ROOT / SOURCES["JobEscrow"]).read_text()
    if source.count(call) != 1:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO_ROOT / "contracts", root / "contracts")
        shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
        (root / "node_modules").symlink_to(REPO_ROOT / "node_modules", target_is_directory=True)
        (root / SOURCES["JobEscrow"]).write_text(source.replace(call, plain))
        built = build_artifacts(root)["JobEscrow"]
    factory = w3.eth.contract(abi=built["abi"], bytecode=built["bytecode"])
    tx = factory.constructor(roles.admin).transact({"from": roles.admin})
    address = w3.eth.wait_for_transaction_receipt(tx, timeout=120)["contractAddress"]
    assert address is not None
    variant = w3.eth.contract(address=address, abi=built["abi"])
    abi_spec = typical_spec().to_abi()
    price = variant.functions.quote(abi_spec, 0).call()
    gas = 0
    for _ in range(2):  # the second job, as submitJob is measured
        gas = int(_send(w3, variant.functions.submitJob(abi_spec, 0), roles.user, price)["gasUsed"])
    return gas


# ------------------------------------------------------------------ report


@dataclass(frozen=True)
class Report:
    """Everything docs/GAS.md shows."""

    figures: dict[str, int]
    breakdowns: dict[str, dict[str, int]]
    plain_emit_submit: int | None
    environment: dict[str, Any]


def run_report(variants: bool = True) -> Report:
    """Measures the figures, traces the representative transactions and the contract variant."""
    roles = Roles.anvil_defaults()
    with Anvil(extra_args=("--steps-tracing",)) as node:
        w3 = connect(node.url, roles.keys)
        measurement = measure(w3, roles)
        breakdowns = {
            name: breakdown(w3, tx_hash, frames)
            for name, (tx_hash, _, frames) in measurement.txs.items()
            if name
            in (
                "submitJob",
                "consumer.submit",
                "applyUpdates.accept.batch50",
                "applyUpdates.complete.batch50",
                "applyUpdates.acceptCallbackJobs.batch50",
                "applyUpdates.completeCallback.batch50",
            )
        }
        plain = measure_plain_emit_variant(w3, roles) if variants else None
        env = environment(
            str(w3.provider.make_request(RPCEndpoint("anvil_nodeInfo"), [])["result"]["hardFork"])
        )
    return Report(measurement.figures, breakdowns, plain, env)


def rewrap(markdown: str, width: int = 100) -> str:
    """Re-wraps the prose paragraphs and list items of ``markdown``; tables and headings stay."""
    blocks = []
    for block in markdown.split("\n\n"):
        lines = block.splitlines()
        if not lines or lines[0].startswith(("|", "#", "```")):
            blocks.append(block)
            continue
        items: list[list[str]] = []
        for line in lines:
            marker = re.match(r"(- |\d+\. )", line)
            if marker or not items:
                items.append([line])
            else:
                items[-1].append(line.strip())
        wrapped = []
        for item in items:
            marker = re.match(r"(- |\d+\. )", item[0])
            indent = " " * len(marker.group(1)) if marker else ""
            text = " ".join(part.strip() for part in item)
            wrapped.append(
                textwrap.fill(
                    (marker.group(1) if marker else "") + text[len(marker.group(1)) :]
                    if marker
                    else text,
                    width=width,
                    subsequent_indent=indent,
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
        blocks.append("\n".join(wrapped))
    return "\n\n".join(blocks).rstrip("\n") + "\n"


def _fmt(gas: float) -> str:
    return f"{round(gas):,}"


def _delta(figure: int, limit: int) -> str:
    diff = figure - limit
    return f"met by {_fmt(-diff)}" if diff <= 0 else f"missed by {_fmt(diff)}"


def target_rows(fig: Mapping[str, int]) -> list[tuple[str, int, str, str]]:
    """(label, figure, limit, verdict) for each target of the issue."""
    rows = []
    for t in TARGETS:
        value = fig[t.figure]
        limit = f"<= {_fmt(t.limit)}" + (f" (aim <= {_fmt(t.aim)})" if t.aim else "")
        verdict = _delta(value, t.limit)
        if t.aim is not None:
            verdict += f"; aim {_delta(value, t.aim)}"
        rows.append((t.label, value, limit, verdict))
    return rows


def render_tables(fig: Mapping[str, int]) -> str:
    """The figures and the targets as Markdown tables."""
    lines = ["| what | gas |", "|---|---:|"]
    lines += [f"| {FIGURES[k]} | {_fmt(fig[k])} |" for k in FIGURES if not k.startswith("bytes.")]
    lines += ["", "| target | measured | limit | verdict |", "|---|---:|---|---|"]
    lines += [f"| {a} | {_fmt(b)} | {c} | {d} |" for a, b, c, d in target_rows(fig)]
    return "\n".join(lines)


def render_breakdown(columns: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    """A Markdown table: one row per category, one column per (title, breakdown)."""
    keys: list[str] = []
    for category in CATEGORIES:
        for _, part in columns:
            keys += [k for k in part if k.split(" [")[0] == category and k not in keys]
    head = "| where the gas goes | " + " | ".join(title for title, _ in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for key in keys:
        cells = [_fmt(part[key]) if round(part.get(key, 0)) else "" for _, part in columns]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    totals = [_fmt(sum(part.values())) for _, part in columns]
    lines.append("| **total** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    return "\n".join(lines)


def _anvil_version() -> str:
    try:
        out = subprocess.run(
            [anvil_binary(), "--version"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return "anvil (version unknown)"
    return out.splitlines()[0].replace("Version: ", "").strip() if out else "anvil (unknown)"


def environment(hardfork: str = "") -> dict[str, Any]:
    """Compiler settings from abi/JobEscrow.json, Anvil's version and the hardfork."""
    compiler = json.loads((ABI_DIR / "JobEscrow.json").read_text())["compiler"]
    return {
        "solc": compiler["version"],
        "optimizer": compiler["settings"]["optimizer"],
        "evmVersion": compiler["settings"]["evmVersion"],
        "anvil": _anvil_version(),
        "hardfork": hardfork,
    }


def render_report(report: Report) -> str:
    """The whole of docs/GAS.md."""
    fig, bd, env = report.figures, report.breakdowns, report.environment
    opt = env["optimizer"]
    strings = workload()
    life = _per_job(
        [
            (bd["consumer.submit"], 1),
            (bd["applyUpdates.acceptCallbackJobs.batch50"], 50),
            (bd["applyUpdates.completeCallback.batch50"], 50),
        ]
    )
    life_columns: list[tuple[str, Mapping[str, float]]] = [
        ("ExampleConsumer.submit", {k: float(v) for k, v in bd["consumer.submit"].items()}),
        (
            "accept (batch 50, per job)",
            _per_job([(bd["applyUpdates.acceptCallbackJobs.batch50"], 50)]),
        ),
        (
            "complete + callback (batch 50, per job)",
            _per_job([(bd["applyUpdates.completeCallback.batch50"], 50)]),
        ),
        ("whole life (b)", life),
    ]
    batch_columns: list[tuple[str, Mapping[str, float]]] = [
        ("accept (batch 50, per job)", _per_job([(bd["applyUpdates.accept.batch50"], 50)])),
        ("complete (batch 50, per job)", _per_job([(bd["applyUpdates.complete.batch50"], 50)])),
    ]
    submit_columns: list[tuple[str, Mapping[str, float]]] = [
        ("submitJob (EOA)", {k: float(v) for k, v in bd["submitJob"].items()})
    ]
    analysis = _analysis(report, life)
    return f"""# Gas report

Generated by `{COMMAND}` (bench/gas.py). Do not edit by hand: change the bench and rerun it.

- Compiler (from `abi/JobEscrow.json`): solc {env["solc"]}, optimizer \
{"on" if opt["enabled"] else "off"}, {opt["runs"]:,} runs, EVM version `{env["evmVersion"]}`.
- Node: {env["anvil"]}, hardfork `{env["hardfork"]}` (its default), a fresh chain per run.
- Workload: the typical spec of `tests/builders.py` (`charityengine:wolframengine`,
  `math -run "Print[2+2]" > output/out.txt`, 2 vcpus, 512 MB RAM and disk, 1 hour, one input
  file with a 40-character URL), which makes {fig["bytes.submitCalldata"]:,} bytes of `submitJob`
  calldata and {fig["bytes.specLog"]:,} bytes of `JobSubmitted` data. The operator writes a remote
  job id of 32 hex characters (as the CE emulator makes them), a result URI shaped
  `{strings["resultURI"]}` and the fail reason "{strings["failReason"]}". The callback is
  `ExampleConsumer.onJobFinished` storing one new slot, with a callback gas limit of
  {CALLBACK_GAS_LIMIT:,}.
- Every figure is a receipt's `gasUsed` (21,000 intrinsic gas and calldata included); a batch
  figure is the batch's `gasUsed` divided by its number of jobs. Where the gas goes comes from
  `debug_traceTransaction` opcode traces of the same transactions (Anvil `--steps-tracing`); each
  column adds up to the `gasUsed` exactly (up to rounding of the per-job division).

## Figures

{render_tables(fig)}

References for a ~30-byte payload on the same kind of chain (from the issue):

{chr(10).join(f"- {name}: {gas}" for name, gas in REFERENCES)}

## Where the gas goes

### submitJob

{render_breakdown(submit_columns)}

### Whole life with a one-slot callback, per job

{render_breakdown(life_columns)}

### Batched operator updates without a callback, per job

{render_breakdown(batch_columns)}

{analysis}"""


def _get(part: Mapping[str, float], category: int, contract: str = "") -> float:
    key = CATEGORIES[category] + (f" [{contract}]" if contract else "")
    return part.get(key, 0.0)


def _analysis(report: Report, life: Mapping[str, float]) -> str:
    """The prose of docs/GAS.md, every number in it taken from this run."""
    fig, bd = report.figures, report.breakdowns
    submit = {k: float(v) for k, v in bd["submitJob"].items()}
    accept = _per_job([(bd["applyUpdates.accept.batch50"], 50)])
    complete = _per_job([(bd["applyUpdates.complete.batch50"], 50)])
    life_total = fig["life.consumerCallback.batch50"]
    no_accept = fig["life.consumerCallback.noAccept.batch50"]
    small = fig["life.consumerCallback.batch50.smallSpec"]
    small_no_accept = fig["life.consumerCallback.noAccept.batch50.smallSpec"]
    accept_write = life_total - no_accept
    consumer_call = _get(life, 6, "ExampleConsumer")
    consumer_code = _get(life, 10, "ExampleConsumer")
    callee_slot = _get(life, 2, "ExampleConsumer")
    callback_extra = (
        fig["applyUpdates.completeCallback.batch50"] - fig["applyUpdates.complete.batch50"]
    )
    not_ours = G_TX + consumer_call + consumer_code + callee_slot
    one_slot = G_NEW_SLOT + G_COLD_SLOAD + 2_900
    credit_saving = G_CALL_VALUE - G_STIPEND - (G_COLD_SLOAD + 2_900)
    plain = report.plain_emit_submit
    plain_text = (
        f"A JobEscrow built with a plain `emit JobSubmitted(..., keccak256(abi.encode(spec)),"
        f" ...)` spends {_fmt(plain)} on the same submission, so the in-place hashing of"
        f" `_emitJobSubmitted` saves {_fmt(plain - fig['submitJob'])} gas a job (measured by"
        " this bench on a patched copy built with the same compiler settings)."
        if plain is not None
        else "(The plain-`emit` variant of the contract was not measured in this run.)"
    )
    first_cmp = "the same as" if fig["submitJob.first"] == fig["submitJob"] else "unlike"
    h_submit = f"{_fmt(fig['submitJob'])}, target 100,000, {_delta(fig['submitJob'], 100_000)}"
    batch50 = fig["acceptComplete.batch50"]
    h_batch = f"{_fmt(batch50)} a job, target 40,000, {_delta(batch50, 40_000)}"
    h_life = (
        f"{_fmt(life_total)} a job, target 140,000, {_delta(life_total, 140_000)};"
        f" aim 128,000, {_delta(life_total, 128_000)}"
    )
    return f"""## Reading the figures

### submitJob: {h_submit}

21,000 is the transaction and {_fmt(_get(submit, 1))} the {fig["bytes.submitCalldata"]:,} bytes
of calldata. The job's two new storage slots are {_fmt(_get(submit, 2))} (2 x 22,100): slot 0
packs requester, status, cancel flag, deadline, callback gas limit and hours; slot 1 packs, while
the job is open, the escrowed payment (96 bits), the base fee and the price per callback gas at
submission and the time the job started running (the fee terms the money rules settle with), and
holds the result hash once the job is completed. The `JobSubmitted` log of
{fig["bytes.specLog"]:,} bytes is {_fmt(_get(submit, 5))}. The configuration is two cold reads
({_fmt(_get(submit, 4))}): pricing, the job counter and the deadline grace share Pausable's
`_paused` slot, the limits fill one more. The other writes ({_fmt(_get(submit, 3))}) are the
counter's write-back (2,900); slot 0 is written with one SSTORE, where the compiler would write
it member by member. The rest ({_fmt(_get(submit, 10))}) is decoding and checking the spec, its ABI
encoding for the event and the hash of that encoding. The first job costs {first_cmp} later ones
({_fmt(fig["submitJob.first"])}). {plain_text}

### accept + complete in batches of 50: {h_batch}

A batch spreads the 21,000 of its transaction over its jobs ({_fmt(_get(accept, 0))} each). An
accept then costs a cold read and a write of slot 0 ({_fmt(_get(accept, 4) + _get(accept, 3))}),
its event with the remote id ({_fmt(_get(accept, 5))}) and its calldata
({_fmt(_get(accept, 1))}); a completion reads and writes both slots
({_fmt(_get(complete, 4) + _get(complete, 3))}), emits the result hash and URI
({_fmt(_get(complete, 5))}) and sends {_fmt(_get(complete, 1))} of calldata; the treasury is
credited once per batch. As single calls the same steps cost {_fmt(fig["acceptJob"])} and
{_fmt(fig["completeJob"])}, mostly the transaction's 21,000.

### Whole life with a one-slot callback: {h_life}

The callback goes to the requester, so a job with a callback is submitted by a contract. On top
of the EOA life ({_fmt(fig["life.eoa.batch50"])}) it pays the consumer's value-bearing CALL into
the escrow, {_fmt(consumer_call)} (9,000 for the value and 2,600 for the cold escrow address,
less the 2,300 stipend that comes back), the consumer's own decoding and re-encoding of the spec,
{_fmt(consumer_code)}, and {_fmt(callback_extra)} for the callback, of which {_fmt(callee_slot)}
is the callee's new slot. So {_fmt(not_ours)} of the {_fmt(life_total)} is not the escrow's to
spend (the submission's 21,000, the consumer's CALL and code, the callee's slot), and the job's
two slots add {_fmt(_get(life, 2))}.

What the gap is made of, from the variants the bench measures:

- The spec's size is not it: with a ~35-byte spec and no input file the life costs
  {_fmt(small)} ({_fmt(life_total - small)} less).
- The accept write is {_fmt(accept_write)} a job: a life that goes Submitted -> Completed costs
  {_fmt(no_accept)} ({_delta(no_accept, 140_000)}), and {_fmt(small_no_accept)} with the small
  spec.
- The rest is the escrow holding the payment: one of the two slots, and the value-bearing call.

Against the references (a ~30-byte payload): API3's AirnodeRrpV0 (~128,600) sends two
unbatched transactions but keeps no payment (the sponsor's wallet pays the fulfilment off-chain):
one new slot a request (a hash of the fulfilment parameters, deleted again at fulfilment) and no
value-bearing call. JobEscrow's closest life, {_fmt(small_no_accept)}, is above it by
{_fmt(small_no_accept - 128_600)}: mostly the payment's slot and the value-bearing call
({_fmt(G_NEW_SLOT + consumer_call)} together), partly made up for by batching, which spreads the
operator's 21,000 over 50 jobs. Chainlink's Operator (~170,000) is above every variant here.

### What the money rules cost

The money rules (prices at submission, a refund less the callback fee for a failed job with a
callback, the hours started for a cancel once Running, an overpayment credited back) need the
base fee and the price per callback gas of the job's submission and the time it started
running. They share slot 1 with the payment, which is now 96 bits (enough: the caps on hours and
callback gas keep every quote below 2^94 wei), so a job still takes two slots. Against the
contract before them (this bench on the same compiler and node):

{_before_after(fig)}

`JobSubmitted` carries one more word (the callback gas limit, +256 of log), paid back by writing
slot 0 with one SSTORE and taking the fee terms from the quote's own reads. `markRunning` now
writes slot 1 too (the running start: a cold read and a write, about +5,000), the one write that
got markedly dearer; a completion pays a few dozen gas more for the callback gas check that lets
a batch skip a starved callback item instead of reverting, a failure a few hundred for the fee
split. The new paths: an overpayment's credit is
{_fmt(fig["submitJob.overpay"] - fig["submitJob"])} on top of the submission when the requester
already has a credit (as in this bench; 17,000 more when it opens the credit slot); a failed
job with a callback {_fmt(fig["failJob.callback"])}, of which the callback and the treasury's
credit of its fee are most; the operator's cancel of a Running job
{_fmt(fig["cancelRunning.batch1"])} as a batch of one.

### What it would take

To meet 140,000 with the typical spec, {_fmt(life_total - 140_000)} has to go (the aim of
128,000: {_fmt(life_total - 128_000)}):

1. **One storage slot a job** (about -{_fmt(one_slot)}: {_fmt(G_NEW_SLOT)} at submission, a cold
   read and a write less at completion, before any calldata it adds to updates): about
   {_fmt(life_total - one_slot)} with the accept write ({_delta(life_total - one_slot, 140_000)}
   against 140,000) and about {_fmt(no_accept - one_slot)} without it
   ({_delta(no_accept - one_slot, 128_000)} against the aim).
   Slot 0 is full and slot 1 holds the payment with the fee terms the money rules need (the
   base fee and callback-gas price at submission, the running start), so these have to leave
   storage: the job would be kept as a commitment hash (requester, payment, terms, deadline,
   callback gas) that the operator sends back with every update, as Airnode and Chainlink
   Functions do. That takes `payment` and `resultHash` out of `getJob`, which the interface
   (docs/PROTOCOL.md) fixes, so it is not an optimisation to slip in.
2. **Skip the accept write** (-{_fmt(accept_write)}, a bridge policy; the contract allows
   Submitted -> Completed): {_fmt(no_accept)} alone,
   {_delta(no_accept, 140_000)}. While a job stays Submitted its
   requester can cancel it with an immediate refund although CE is already running it, and the
   remote job id is not on-chain, so this fits only jobs that end within one batching window.
3. **Smaller savings** that keep the interface, a few thousand together: copying the spec's
   calldata encoding into the log instead of re-encoding it
   (part of the {_fmt(_get(submit, 10))} of decoding and encoding in `submitJob`, and only safe
   with a check that the calldata encoding is canonical); consumers paying from a balance
   credited in the escrow instead of a value-bearing call (about -{_fmt(credit_saving)}: 6,700
   less the credit's cold read and write).
"""


def _before_after(fig: Mapping[str, int]) -> str:
    """A Markdown table of ``BEFORE_MONEY_RULES`` against this run."""
    lines = ["| what | before | now | change |", "|---|---:|---:|---:|"]
    for key, before in BEFORE_MONEY_RULES.items():
        now = fig[key]
        lines.append(f"| {FIGURES[key]} | {_fmt(before)} | {_fmt(now)} | {now - before:+,} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the bench, prints the tables and writes docs/GAS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.gas", description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--output", type=Path, default=REPORT_PATH, help="report path")
    args = parser.parse_args(argv)
    if args.no_write:
        fig = run()
    else:
        report = run_report()
        fig = report.figures
        args.output.write_text(rewrap(render_report(report)))
    print(json.dumps(fig, indent=2) if args.json else render_tables(fig))
    if not args.no_write:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
