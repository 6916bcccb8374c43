"""JobEscrow end to end on a real Anvil, driven with web3.py from the artifacts in abi/.

Covers the lifecycle paths (with and without a consumer callback), refunds and withdrawals to the
wei, cancellation in every state, expiry through time travel, a batch of updates with invalid
items, and that the submission event carries the spec exactly as the bridge hashes and decodes
it. Custom errors are checked by their 4-byte selector and decoded arguments.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from eth_abi.abi import decode
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from bridge.chain.reader import LogReader, SubmittedLog
from bridge.chain.spec import JOB_SPEC_ABI_TYPE, InputFile, JobSpec, Status, spec_hash
from tests.builders import (
    Accounts,
    error_selector,
    events,
    gas_cost,
    get_job,
    increase_time,
    result_hash,
    reverts_with,
    send,
    spec,
    status_of,
    submit_job,
    submit_via_consumer,
    update,
)

CALLBACK_GAS = 50_000
RESULT_URI = "https://api.charityengine.services/remotejobs/v2/outputs/ce-1/manifest"


def _move_to(
    chain: Web3, escrow: Contract, accounts: Accounts, job_id: int, target: Status
) -> None:
    """Moves a Submitted job of ``accounts.user`` to ``target`` the way it happens for real."""
    operator = accounts.operator
    if target in (Status.ACCEPTED, Status.RUNNING):
        send(chain, escrow.functions.acceptJob(job_id, f"ce-{job_id}"), operator)
    if target == Status.RUNNING:
        send(chain, escrow.functions.markRunning(job_id), operator)
    if target == Status.COMPLETED:
        send(
            chain,
            escrow.functions.completeJob(job_id, result_hash(str(job_id)), RESULT_URI),
            operator,
        )
    if target == Status.FAILED:
        send(chain, escrow.functions.failJob(job_id, "CE rejected the job"), operator)
    if target == Status.CANCELLED:
        send(chain, escrow.functions.cancelJob(job_id), accounts.user)
    if target == Status.EXPIRED:
        deadline = get_job(escrow, job_id)["deadline"]
        increase_time(chain, deadline - chain.eth.get_block("latest")["timestamp"] + 1)
        send(chain, escrow.functions.reclaimExpired(job_id), accounts.other)
    assert status_of(escrow, job_id) == target


# ------------------------------------------------------------------ submission


def test_the_typical_spec_is_the_issue_s() -> None:
    typical = spec()
    assert typical.app == "charityengine:wolframengine"
    assert typical.command_line == 'math -run "Print[2+2]" > output/out.txt'
    assert (typical.specs.vcpus, typical.specs.ram, typical.specs.disk) == (2, 512, 512)
    assert typical.max_hours == 1
    assert [len(f.url) for f in typical.input_files] == [40]
    assert spec(vcpus=4, max_hours=3).specs.vcpus == 4


@pytest.mark.parametrize(
    "job_spec",
    [
        spec(),
        spec(
            app="docker:python:3.12-slim",
            command_line="python run.py --seed 7 > output/result.json",
            vcpus=8,
            ram=16_384,
            disk=65_536,
            network_download=1_000,
            network_upload=10,
            max_hours=24,
            input_files=(
                InputFile("run.py", "https://example.org/code/run.py"),
                InputFile(
                    "données/ü.csv",
                    "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                ),
                InputFile("z", "https://example.org/z"),
            ),
        ),
        spec(input_files=()),
    ],
    ids=["typical", "rich", "no-input-files"],
)
def test_job_submitted_event_carries_the_spec_and_its_hash(
    chain: Web3, escrow: Contract, accounts: Accounts, job_spec: JobSpec
) -> None:
    price = escrow.functions.quote(job_spec.to_abi(), 0).call()
    job_id, receipt = submit_job(chain, escrow, accounts.user, job_spec, value=price + 7)

    (event,) = events(escrow, receipt, "JobSubmitted")
    args = event["args"]
    assert args["jobId"] == job_id == 1
    assert args["requester"] == accounts.user
    assert args["specHash"] == spec_hash(job_spec)
    assert args["payment"] == price  # only the quote is escrowed; the 7 wei above are credited back
    now = chain.eth.get_block(receipt["blockNumber"])["timestamp"]
    grace = escrow.functions.deadlineGrace().call()
    assert args["deadline"] == now + job_spec.max_hours * 3600 + grace
    # web3's decoding (a dict per struct) and a raw eth_abi decoding (tuples) both round-trip.
    assert JobSpec.from_abi(args["spec"]) == job_spec
    topic = HexBytes(escrow.events.JobSubmitted().topic)
    (log,) = [entry for entry in receipt["logs"] if HexBytes(entry["topics"][0]) == topic]
    _, _, _, raw_spec, gas_limit = decode(
        ["bytes32", "uint256", "uint64", JOB_SPEC_ABI_TYPE, "uint32"], log["data"]
    )
    assert JobSpec.from_abi(raw_spec) == job_spec
    assert gas_limit == args["callbackGasLimit"] == 0

    job = get_job(escrow, job_id)
    assert job == {
        "requester": accounts.user,
        "status": Status.SUBMITTED,
        "cancelRequested": False,
        "deadline": args["deadline"],
        "callbackGasLimit": 0,
        "payment": price,
        "resultHash": b"\x00" * 32,
    }
    assert escrow.functions.creditOf(accounts.user).call() == 7
    assert chain.eth.get_balance(escrow.address) == price + 7


def test_submit_rejects_a_payment_below_the_quote(
    chain: Web3, escrow: Contract, accounts: Accounts
) -> None:
    price = escrow.functions.quote(spec().to_abi(), 0).call()
    with reverts_with("PaymentTooLow(uint256,uint256)") as revert:
        submit_job(chain, escrow, accounts.user, value=price - 1)
    assert revert.args == (price - 1, price)


def test_log_reader_reads_the_callback_gas_limit_from_the_event(
    chain: Web3, escrow: Contract, consumer: Contract, accounts: Accounts
) -> None:
    """The bridge sizes batches from ``JobSubmitted``'s last field, with no extra call."""
    with_callback, receipt = submit_via_consumer(
        chain, escrow, consumer, accounts.user, callback_gas_limit=CALLBACK_GAS
    )
    without_callback, _ = submit_job(chain, escrow, accounts.user, spec())
    reader = LogReader(chain, escrow.address, cast(list[dict[str, Any]], escrow.abi))
    submitted = {
        entry.job_id: entry
        for entry in reader.fetch(receipt["blockNumber"], reader.head())
        if isinstance(entry, SubmittedLog)
    }
    assert submitted[with_callback].callback_gas_limit == CALLBACK_GAS
    assert submitted[with_callback].requester == consumer.address
    assert submitted[without_callback].callback_gas_limit == 0


# ------------------------------------------------------------------ lifecycle


def test_submit_accept_run_complete_calls_the_consumer_back(
    chain: Web3, escrow: Contract, consumer: Contract, accounts: Accounts
) -> None:
    job_id, _ = submit_via_consumer(
        chain, escrow, consumer, accounts.user, callback_gas_limit=CALLBACK_GAS
    )
    job = get_job(escrow, job_id)
    assert job["requester"] == consumer.address
    assert job["callbackGasLimit"] == CALLBACK_GAS
    payment = job["payment"]
    treasury_before = escrow.functions.creditOf(accounts.treasury).call()

    receipt = send(chain, escrow.functions.acceptJob(job_id, "ce-42"), accounts.operator)
    (accepted,) = events(escrow, receipt, "JobAccepted")
    assert accepted["args"] == {"jobId": job_id, "remoteJobId": "ce-42"}
    assert status_of(escrow, job_id) == Status.ACCEPTED

    receipt = send(chain, escrow.functions.markRunning(job_id), accounts.operator)
    (running,) = events(escrow, receipt, "JobRunning")
    assert running["args"] == {"jobId": job_id}
    assert status_of(escrow, job_id) == Status.RUNNING

    digest = result_hash("out.txt")
    receipt = send(
        chain, escrow.functions.completeJob(job_id, digest, RESULT_URI), accounts.operator
    )
    (completed,) = events(escrow, receipt, "JobCompleted")
    assert completed["args"] == {"jobId": job_id, "resultHash": digest, "resultURI": RESULT_URI}
    (credited,) = events(escrow, receipt, "Credited")
    assert credited["args"] == {"account": accounts.treasury, "amount": payment}
    assert events(escrow, receipt, "CallbackFailed") == []

    assert consumer.functions.results(job_id).call() == digest
    job = get_job(escrow, job_id)
    assert (job["status"], job["payment"], job["resultHash"]) == (Status.COMPLETED, 0, digest)
    assert escrow.functions.creditOf(accounts.treasury).call() == treasury_before + payment


def test_fail_refunds_the_requester_to_the_wei(
    chain: Web3, escrow: Contract, accounts: Accounts
) -> None:
    user = accounts.user
    start = chain.eth.get_balance(user)
    job_id, submit_receipt = submit_job(chain, escrow, user)
    payment = get_job(escrow, job_id)["payment"]
    assert chain.eth.get_balance(user) == start - payment - gas_cost(submit_receipt)

    receipt = send(chain, escrow.functions.failJob(job_id, "no such app"), accounts.operator)
    (failed,) = events(escrow, receipt, "JobFailed")
    assert failed["args"] == {"jobId": job_id, "reason": "no such app"}
    (credited,) = events(escrow, receipt, "Credited")
    assert credited["args"] == {"account": user, "amount": payment}
    assert escrow.functions.creditOf(user).call() == payment
    assert get_job(escrow, job_id)["payment"] == 0

    before = chain.eth.get_balance(user)
    receipt = send(chain, escrow.functions.withdraw(), user)
    (withdrawn,) = events(escrow, receipt, "Withdrawn")
    assert withdrawn["args"] == {"account": user, "amount": payment}
    assert chain.eth.get_balance(user) - before == payment - gas_cost(receipt)
    assert chain.eth.get_balance(user) == start - gas_cost(submit_receipt) - gas_cost(receipt)
    assert escrow.functions.creditOf(user).call() == 0
    assert chain.eth.get_balance(escrow.address) == 0

    with reverts_with("NothingToWithdraw(address)") as revert:
        escrow.functions.withdraw().transact({"from": user})
    assert revert.args == (user.lower(),)


def test_only_the_operator_writes_status(chain: Web3, escrow: Contract, accounts: Accounts) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user)
    with reverts_with("AccessControlUnauthorizedAccount(address,bytes32)") as revert:
        escrow.functions.acceptJob(job_id, "ce-1").transact({"from": accounts.other})
    assert revert.args == (accounts.other.lower(), bytes(Web3.keccak(text="OPERATOR_ROLE")))


# ------------------------------------------------------------------ cancellation


def test_cancel_a_submitted_job_refunds_at_once(
    chain: Web3, escrow: Contract, accounts: Accounts
) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user)
    payment = get_job(escrow, job_id)["payment"]

    receipt = send(chain, escrow.functions.cancelJob(job_id), accounts.user)

    assert [e["args"] for e in events(escrow, receipt, "JobCancelled")] == [{"jobId": job_id}]
    (credited,) = events(escrow, receipt, "Credited")
    assert credited["args"] == {"account": accounts.user, "amount": payment}
    job = get_job(escrow, job_id)
    assert (job["status"], job["payment"]) == (Status.CANCELLED, 0)
    assert escrow.functions.creditOf(accounts.user).call() == payment


@pytest.mark.parametrize("state", [Status.ACCEPTED, Status.RUNNING])
def test_cancel_after_accept_is_requested_then_ended_by_the_operator(
    chain: Web3, escrow: Contract, accounts: Accounts, state: Status
) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user, spec(max_hours=5))
    payment = get_job(escrow, job_id)["payment"]
    _move_to(chain, escrow, accounts, job_id, state)

    with reverts_with("NotRequester(uint256,address)") as revert:
        escrow.functions.cancelJob(job_id).transact({"from": accounts.other})
    assert revert.args == (job_id, accounts.other.lower())

    receipt = send(chain, escrow.functions.cancelJob(job_id), accounts.user)
    assert [e["args"] for e in events(escrow, receipt, "CancelRequested")] == [{"jobId": job_id}]
    assert events(escrow, receipt, "Credited") == []
    job = get_job(escrow, job_id)
    assert (job["status"], job["cancelRequested"], job["payment"]) == (state, True, payment)

    with reverts_with("CancelAlreadyRequested(uint256)") as revert:
        escrow.functions.cancelJob(job_id).transact({"from": accounts.user})
    assert revert.args == (job_id,)

    receipt = send(
        chain,
        escrow.functions.applyUpdates([update(job_id, Status.CANCELLED, data="user asked")]),
        accounts.operator,
    )
    assert events(escrow, receipt, "UpdateSkipped") == []
    assert [e["args"] for e in events(escrow, receipt, "JobCancelled")] == [{"jobId": job_id}]
    # Before Running: a full refund. Once Running: the base fee and the first started hour (the
    # typical spec's 2 vcpus) are the treasury's, the four hours not started are refunded.
    pricing = escrow.functions.pricing().call()
    kept = 0 if state == Status.ACCEPTED else pricing[0] + 2 * pricing[1]
    credits = {
        e["args"]["account"]: e["args"]["amount"] for e in events(escrow, receipt, "Credited")
    }
    expected = {accounts.user: payment - kept}
    if kept:
        expected[accounts.treasury] = kept
    assert credits == expected
    job = get_job(escrow, job_id)
    assert (job["status"], job["payment"]) == (Status.CANCELLED, 0)
    assert escrow.functions.creditOf(accounts.user).call() == payment - kept


def test_operator_cannot_cancel_without_a_request(
    chain: Web3, escrow: Contract, accounts: Accounts
) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user)
    _move_to(chain, escrow, accounts, job_id, Status.ACCEPTED)

    receipt = send(
        chain,
        escrow.functions.applyUpdates([update(job_id, Status.CANCELLED)]),
        accounts.operator,
    )

    (skipped,) = events(escrow, receipt, "UpdateSkipped")
    assert skipped["args"] == {
        "jobId": job_id,
        "status": Status.CANCELLED,
        "reason": error_selector("CancelNotRequested(uint256)"),
    }
    assert status_of(escrow, job_id) == Status.ACCEPTED


@pytest.mark.parametrize(
    "state", [Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED]
)
def test_cancel_a_terminal_job_reverts(
    chain: Web3, escrow: Contract, accounts: Accounts, state: Status
) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user)
    _move_to(chain, escrow, accounts, job_id, state)

    with reverts_with("InvalidTransition(uint256,uint8,uint8)") as revert:
        escrow.functions.cancelJob(job_id).transact({"from": accounts.user})

    assert revert.args == (job_id, state, Status.CANCELLED)


# ------------------------------------------------------------------ expiry


def test_expired_job_is_reclaimed_by_anyone_and_the_consumer_hears_of_it(
    chain: Web3, escrow: Contract, consumer: Contract, accounts: Accounts
) -> None:
    job_id, _ = submit_via_consumer(
        chain, escrow, consumer, accounts.user, callback_gas_limit=CALLBACK_GAS
    )
    _move_to(chain, escrow, accounts, job_id, Status.ACCEPTED)
    job = get_job(escrow, job_id)
    deadline, payment = job["deadline"], job["payment"]

    with reverts_with("JobNotExpired(uint256,uint256)") as revert:
        escrow.functions.reclaimExpired(job_id).transact({"from": accounts.other})
    assert revert.args == (job_id, deadline)

    now = increase_time(chain, deadline - chain.eth.get_block("latest")["timestamp"] + 1)
    assert now > deadline

    # After the deadline no operator write is accepted.
    with reverts_with("DeadlinePassed(uint256,uint256)") as revert:
        escrow.functions.completeJob(job_id, result_hash("late"), RESULT_URI).transact(
            {"from": accounts.operator}
        )
    assert revert.args == (job_id, deadline)

    receipt = send(chain, escrow.functions.reclaimExpired(job_id), accounts.other)

    assert [e["args"] for e in events(escrow, receipt, "JobExpired")] == [{"jobId": job_id}]
    (credited,) = events(escrow, receipt, "Credited")
    assert credited["args"] == {"account": consumer.address, "amount": payment}
    assert events(escrow, receipt, "CallbackFailed") == []
    assert consumer.functions.results(job_id).call() == int(Status.EXPIRED).to_bytes(32, "big")
    job = get_job(escrow, job_id)
    assert (job["status"], job["payment"]) == (Status.EXPIRED, 0)
    assert escrow.functions.creditOf(consumer.address).call() == payment

    with reverts_with("InvalidTransition(uint256,uint8,uint8)") as revert:
        escrow.functions.reclaimExpired(job_id).transact({"from": accounts.other})
    assert revert.args == (job_id, Status.EXPIRED, Status.EXPIRED)

    # The consumer pulls its refund and forwards it to its owner.
    before = chain.eth.get_balance(accounts.user)
    receipt = send(chain, consumer.functions.withdrawRefunds(), accounts.user)
    assert chain.eth.get_balance(accounts.user) - before == payment - gas_cost(receipt)


# ------------------------------------------------------------------ batches


def test_batch_of_50_applies_47_and_skips_3_invalid_items(
    chain: Web3, escrow: Contract, accounts: Accounts
) -> None:
    job_ids = [submit_job(chain, escrow, accounts.user)[0] for _ in range(49)]
    payment = get_job(escrow, job_ids[0])["payment"]
    valid_ids, running_id, fresh_id = job_ids[:47], job_ids[47], job_ids[48]
    _move_to(chain, escrow, accounts, running_id, Status.RUNNING)
    unknown_id = 10_000

    expected: dict[int, Status] = {}
    items: list[tuple[int, int, bytes, str]] = []
    for n, job_id in enumerate(valid_ids):
        # A mix of forward moves, including skipped steps (Submitted -> Completed / Failed).
        status = (Status.ACCEPTED, Status.COMPLETED, Status.FAILED)[n % 3]
        data = {Status.ACCEPTED: f"ce-{job_id}", Status.COMPLETED: RESULT_URI}.get(status, "err")
        items.append(update(job_id, status, result_hash(str(job_id)), data))
        expected[job_id] = status
    backwards = "InvalidTransition(uint256,uint8,uint8)"
    invalid: list[tuple[tuple[int, int, bytes, str], str]] = [
        (update(unknown_id, Status.ACCEPTED, data="ce-x"), "JobNotFound(uint256)"),
        (update(running_id, Status.ACCEPTED, data="ce-y"), backwards),
        (update(fresh_id, 9), "InvalidStatus(uint256,uint8)"),
    ]
    for position, (item, _) in zip((5, 25, 45), invalid, strict=True):
        items.insert(position, item)
    assert len(items) == 50

    receipt = send(chain, escrow.functions.applyUpdates(items), accounts.operator)

    assert receipt["status"] == 1
    skipped = [dict(e["args"]) for e in events(escrow, receipt, "UpdateSkipped")]
    assert skipped == [
        {"jobId": item[0], "status": item[1], "reason": error_selector(signature)}
        for item, signature in invalid
    ]
    applied: list[Any] = [
        e["args"]["jobId"]
        for name in ("JobAccepted", "JobCompleted", "JobFailed")
        for e in events(escrow, receipt, name)
    ]
    assert sorted(applied) == sorted(valid_ids)
    assert len(applied) == 47
    for job_id, status in expected.items():
        assert status_of(escrow, job_id) == status
    assert status_of(escrow, running_id) == Status.RUNNING
    assert status_of(escrow, fresh_id) == Status.SUBMITTED

    completed = sum(1 for s in expected.values() if s == Status.COMPLETED)
    failed = sum(1 for s in expected.values() if s == Status.FAILED)
    credits = [dict(e["args"]) for e in events(escrow, receipt, "Credited")]
    assert credits.count({"account": accounts.user, "amount": payment}) == failed
    # Earnings of the batch are credited to the treasury once, at the end.
    assert credits[-1] == {"account": accounts.treasury, "amount": completed * payment}
    assert len(credits) == failed + 1


@pytest.mark.parametrize(
    ("single_call", "signature"),
    [
        ("accept-unknown", "JobNotFound(uint256)"),
        ("accept-running", "InvalidTransition(uint256,uint8,uint8)"),
        ("complete-zero-hash", "ZeroResultHash(uint256)"),
    ],
)
def test_single_calls_revert_with_the_selector_a_batch_would_skip_with(
    chain: Web3, escrow: Contract, accounts: Accounts, single_call: str, signature: str
) -> None:
    job_id, _ = submit_job(chain, escrow, accounts.user)
    _move_to(chain, escrow, accounts, job_id, Status.RUNNING)
    calls = {
        "accept-unknown": (
            escrow.functions.acceptJob(999, "ce-x"),
            update(999, Status.ACCEPTED),
            (999,),
        ),
        "accept-running": (
            escrow.functions.acceptJob(job_id, "ce-x"),
            update(job_id, Status.ACCEPTED),
            (job_id, Status.RUNNING, Status.ACCEPTED),
        ),
        "complete-zero-hash": (
            escrow.functions.completeJob(job_id, b"\x00" * 32, RESULT_URI),
            update(job_id, Status.COMPLETED),
            (job_id,),
        ),
    }
    fn, item, expected_args = calls[single_call]

    with reverts_with(signature) as revert:
        fn.transact({"from": accounts.operator})
    assert revert.args == expected_args

    receipt = send(chain, escrow.functions.applyUpdates([item]), accounts.operator)
    (skipped,) = events(escrow, receipt, "UpdateSkipped")
    assert skipped["args"]["reason"] == error_selector(signature)
