"""The gas limit the writer gives an ``applyUpdates`` batch covers what the batch uses, in each
status's most expensive case, on a real Anvil.

``bridge.tx.policy.batch_gas`` sizes a batch from what its items may spend mined (per status,
per byte of data, plus each callback's whole limit), not from a simulation alone. Each case here
builds a batch of its status's costliest items and sends it with exactly that limit:

- every requester a fresh account (a refund writes a new credit slot), the treasury's credit
  slot still empty (the batch's first earnings write it), and the item's data as long as the
  bridge writes it (a reason capped at ``MAX_REASON_BYTES``, a long remote job id or URI);
- a cancel of a Running job (its running charge is computed), a failure of a Running job;
- callbacks to consumers that burn every unit of their gas, each consumer its own requester:
  no item may be skipped for want of its callback's gas.

The batch must succeed with every item applied and its gas used within the limit *before* the
margin (``BATCH_GAS_MARGIN_PERCENT``), so the margin stays spare.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint

from bridge.chain.spec import Status
from bridge.tx.policy import BATCH_GAS_MARGIN_PERCENT, MAX_REASON_BYTES, batch_gas
from tests.builders import (
    Accounts,
    events,
    result_hash,
    send,
    status_of,
    submit_job,
    submit_via_consumer,
    update,
)
from tests.contracts import deploy_test_contract

#: Items a batch: enough for the per-item cost to dominate the batch's own.
ITEMS = 12
LONG_REMOTE_ID = "ce-" + "7" * 125  # 128 bytes
LONG_URI = "https://bridge.example.org/jobs/" + "9" * 200 + "/outputs/"


@dataclass
class _Item:
    """An update as ``batch_gas`` reads it."""

    job_id: int
    status: int
    data: str


def _fresh_requesters(chain: Web3, count: int, seed: int) -> list[ChecksumAddress]:
    """``count`` new funded accounts that the node signs for (impersonated)."""
    out = []
    for i in range(count):
        address = Web3.to_checksum_address(f"0x{seed:08x}{i:032x}")
        chain.provider.make_request(RPCEndpoint("anvil_setBalance"), [address, hex(10**20)])
        chain.provider.make_request(RPCEndpoint("anvil_impersonateAccount"), [address])
        out.append(address)
    return out


def _jobs_in(
    chain: Web3, escrow: Contract, accounts: Accounts, status: Status, cancel: bool
) -> list[int]:
    """``ITEMS`` jobs, each of its own fresh requester, moved to ``status`` (and, with
    ``cancel``, with a cancel requested)."""
    job_ids = []
    for requester in _fresh_requesters(chain, ITEMS, seed=int(status) * 10 + int(cancel)):
        job_id, _ = submit_job(chain, escrow, requester)
        if status >= Status.ACCEPTED:
            send(chain, escrow.functions.acceptJob(job_id, "ce-1"), accounts.operator)
        if status >= Status.RUNNING:
            send(chain, escrow.functions.markRunning(job_id), accounts.operator)
        if cancel:
            send(chain, escrow.functions.cancelJob(job_id), requester)
        assert status_of(escrow, job_id) == status
        job_ids.append(job_id)
    return job_ids


@pytest.mark.parametrize(
    ("start", "target", "data", "cancel"),
    [
        (Status.SUBMITTED, Status.ACCEPTED, LONG_REMOTE_ID, False),
        (Status.ACCEPTED, Status.RUNNING, "", False),
        (Status.RUNNING, Status.COMPLETED, LONG_URI, False),
        (Status.SUBMITTED, Status.COMPLETED, LONG_URI, False),
        (Status.RUNNING, Status.FAILED, "x" * MAX_REASON_BYTES, False),
        (Status.SUBMITTED, Status.FAILED, "x" * MAX_REASON_BYTES, False),
        (Status.RUNNING, Status.CANCELLED, "y" * MAX_REASON_BYTES, True),
        (Status.ACCEPTED, Status.CANCELLED, "y" * MAX_REASON_BYTES, True),
    ],
    ids=[
        "accept",
        "running",
        "complete-running",
        "complete-submitted",
        "fail-running",
        "fail-submitted",
        "cancel-running",
        "cancel-accepted",
    ],
)
def test_a_batch_of_the_costliest_items_fits_its_sized_gas_before_the_margin(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    start: Status,
    target: Status,
    data: str,
    cancel: bool,
) -> None:
    job_ids = _jobs_in(chain, escrow, accounts, start, cancel)
    _assert_fits(chain, escrow, accounts, job_ids, target, data, {})


def _assert_fits(
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    job_ids: list[int],
    target: Status,
    data: str,
    callback_limits: dict[int, int],
) -> None:
    """Sends ``applyUpdates`` moving ``job_ids`` to ``target`` with the gas ``batch_gas`` sizes;
    every item must apply, within the limit before its margin."""
    completed = target == Status.COMPLETED
    items = [
        update(job_id, target, result_hash(str(job_id)) if completed else bytes(32), data)
        for job_id in job_ids
    ]
    limit = batch_gas([_Item(j, s, d) for j, s, _, d in items], callback_limits)

    receipt = send(chain, escrow.functions.applyUpdates(items), accounts.operator, gas=limit)

    assert events(escrow, receipt, "UpdateSkipped") == []
    assert all(status_of(escrow, job_id) == target for job_id in job_ids)
    used = int(receipt["gasUsed"])
    before_margin = limit * 100 // (100 + BATCH_GAS_MARGIN_PERCENT)
    print(f"-> {target.name}: used {used}, sized {limit} ({used / len(items):.0f} an item)")
    assert used <= before_margin, f"{target.name}: used {used} of {before_margin} before the margin"


@pytest.mark.parametrize("target", [Status.COMPLETED, Status.FAILED], ids=["completed", "failed"])
def test_callbacks_that_burn_their_whole_gas_are_never_skipped(
    chain: Web3, escrow: Contract, accounts: Accounts, target: Status
) -> None:
    callback_gas = 200_000
    job_ids = []
    for _ in range(ITEMS):
        burner = deploy_test_contract(chain, "GasBurnerConsumer", accounts.user, escrow.address)
        job_ids.append(
            submit_via_consumer(chain, escrow, burner, accounts.user, None, callback_gas)[0]
        )
    data = LONG_URI if target == Status.COMPLETED else "z" * MAX_REASON_BYTES
    limits = {job_id: callback_gas for job_id in job_ids}

    _assert_fits(chain, escrow, accounts, job_ids, target, data, limits)
