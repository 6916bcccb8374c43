"""The gas limit the writer gives an ``applyUpdates`` batch covers what the batch uses, in each
status's most expensive case, on a real Anvil.

``bridge.tx.policy.batch_gas`` sizes a batch from what its items may spend mined (per status,
per byte of data, plus each callback's whole limit), not from a simulation alone. Each case here
builds a batch of its status's costliest items and sends it with the sized limit *less its
margin* (``BATCH_GAS_MARGIN_PERCENT``): every item must still apply (none skipped, nothing out
of gas), so the margin stays spare. The costliest cases:

- every requester a fresh account (a refund writes a new credit slot), the treasury's credit
  slot still empty (the batch's first earnings write it), and the item's data as long as the
  bridge writes it (a reason capped at ``MAX_REASON_BYTES``, a long remote job id or URI);
- a cancel of a job that ran for one of its five hours (its running charge is computed and the
  rest refunded), a failure of a Running job;
- free jobs (the admin set every price to zero): a job's terms slot is then empty, so a running
  mark or a completion writes a slot from zero;
- callbacks to consumers that burn every unit of their gas, each consumer its own requester:
  no item may be skipped for want of its callback's gas.
"""

from __future__ import annotations

import pytest
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint

from bridge.chain.spec import Status
from bridge.store.models import Update
from bridge.tx.policy import BATCH_GAS_MARGIN_PERCENT, MAX_REASON_BYTES, batch_gas
from tests.builders import (
    Accounts,
    events,
    increase_time,
    result_hash,
    send,
    spec,
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
    chain: Web3,
    escrow: Contract,
    accounts: Accounts,
    status: Status,
    cancel: bool,
    free: bool = False,
) -> list[int]:
    """``ITEMS`` jobs of five hours, each of its own fresh requester, moved to ``status`` (with
    ``cancel``, with a cancel requested after an hour; with ``free``, at zero prices)."""
    if free:
        send(chain, escrow.functions.setPricing((0, 0, 0)), accounts.admin)
    job_ids = []
    seed = int(status) * 10 + int(cancel) + 100 * int(free)
    for requester in _fresh_requesters(chain, ITEMS, seed=seed):
        job_id, _ = submit_job(chain, escrow, requester, spec(max_hours=5))
        if status >= Status.ACCEPTED:
            send(chain, escrow.functions.acceptJob(job_id, "ce-1"), accounts.operator)
        if status >= Status.RUNNING:
            send(chain, escrow.functions.markRunning(job_id), accounts.operator)
        if cancel:
            send(chain, escrow.functions.cancelJob(job_id), requester)
        assert status_of(escrow, job_id) == status
        job_ids.append(job_id)
    if cancel and status == Status.RUNNING:
        increase_time(chain, 3_600)  # into the second hour: a part of the payment is refunded
    return job_ids


@pytest.mark.parametrize(
    ("start", "target", "data", "cancel", "free"),
    [
        pytest.param(Status.SUBMITTED, Status.ACCEPTED, LONG_REMOTE_ID, False, False, id="accept"),
        pytest.param(Status.ACCEPTED, Status.RUNNING, "", False, False, id="running"),
        pytest.param(Status.ACCEPTED, Status.RUNNING, "", False, True, id="running-free"),
        pytest.param(
            Status.RUNNING, Status.COMPLETED, LONG_URI, False, False, id="complete-running"
        ),
        pytest.param(
            Status.SUBMITTED, Status.COMPLETED, LONG_URI, False, False, id="complete-submitted"
        ),
        pytest.param(Status.RUNNING, Status.COMPLETED, LONG_URI, False, True, id="complete-free"),
        pytest.param(
            Status.RUNNING, Status.FAILED, "x" * MAX_REASON_BYTES, False, False, id="fail-running"
        ),
        pytest.param(
            Status.SUBMITTED,
            Status.FAILED,
            "x" * MAX_REASON_BYTES,
            False,
            False,
            id="fail-submitted",
        ),
        pytest.param(
            Status.RUNNING,
            Status.CANCELLED,
            "y" * MAX_REASON_BYTES,
            True,
            False,
            id="cancel-running",
        ),
        pytest.param(
            Status.ACCEPTED,
            Status.CANCELLED,
            "y" * MAX_REASON_BYTES,
            True,
            False,
            id="cancel-accepted",
        ),
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
    free: bool,
) -> None:
    job_ids = _jobs_in(chain, escrow, accounts, start, cancel, free)
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
    queued = [Update(job_id=j, status=s, data=d) for j, s, _, d in items]  # as the writer sizes
    limit = batch_gas(queued, callback_limits)
    before_margin = limit * 100 // (100 + BATCH_GAS_MARGIN_PERCENT)

    receipt = send(
        chain, escrow.functions.applyUpdates(items), accounts.operator, gas=before_margin
    )

    assert events(escrow, receipt, "UpdateSkipped") == []
    assert all(status_of(escrow, job_id) == target for job_id in job_ids)
    used = int(receipt["gasUsed"])
    print(f"-> {target.name}: used {used} of {before_margin} ({used / len(items):.0f} an item)")


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
