"""Hostile requesters mixed with ordinary ones (issue 9): nothing a requester sends may stall,
crash or drain the bridge.

Ordinary jobs are submitted together with: specs whose strings are not UTF-8 (app, command line,
file name), consumers that burn their whole callback gas when mined (one only when
``tx.gasprice != 0``, which a simulation at gas price 0 would never see), a consumer that reverts
with 1 MB of return data, output bombs (too many files; a file over the size cap) and a CE
failure message of 1 MB. Every ordinary job completes; every hostile one ends on-chain (the
consumers' jobs complete, their callbacks failing; the others fail with a reason and are
refunded); at most two operator transactions revert; and the usual audit passes (money adds up,
one remote job per key, nonces without gaps).
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, col, create_engine, select
from web3.types import TxParams, Wei

from bridge.chain.spec import JobSpec, Resources
from bridge.devstack import LocalStack
from bridge.store.models import ChainTx
from bridge.tx.manager import REVERTED
from bridge.tx.policy import MAX_REASON_BYTES
from tests.contracts import deploy_test_contract
from tests.faults.harness import RunStart, Submitted, Workload, audit, wait_for, writes_settled
from tests.hostile import raw_spec, submit_raw

CALLBACK_GAS = 1_500_000
ORDINARY = 12


def _spec(command: str) -> JobSpec:
    return JobSpec("charityengine:wolframengine", command, Resources(vcpus=1, ram=256, disk=256), 1)


def _submit(stack: LocalStack, work: Workload, kind: str, command: str) -> None:
    spec = _spec(command).to_abi()
    price = int(stack.escrow.functions.quote(spec, 0).call())
    params: TxParams = {"from": stack.roles.user, "value": Wei(price)}
    receipt = stack.w3.eth.wait_for_transaction_receipt(
        stack.escrow.functions.submitJob(spec, 0).transact(params), timeout=60
    )
    (event,) = stack.escrow.events.JobSubmitted().process_receipt(receipt)
    work.jobs.append(
        _submitted(int(event["args"]["jobId"]), kind, price, stack.roles.user, receipt)
    )


def _submitted(job_id: int, kind: str, price: int, requester: str, receipt: object) -> Submitted:
    assert isinstance(receipt, dict) or hasattr(receipt, "get")
    return Submitted(
        job_id=job_id,
        kind=kind,
        payment=price,
        requester=requester,
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),  # type: ignore[index]
        block=int(receipt["blockNumber"]),  # type: ignore[index]
    )


def _via_consumer(stack: LocalStack, work: Workload, name: str, *args: object) -> None:
    consumer = deploy_test_contract(stack.w3, name, stack.roles.user, stack.escrow.address, *args)
    spec = _spec(f"echo {name} > output/out.txt").to_abi()
    price = int(stack.escrow.functions.quote(spec, CALLBACK_GAS).call())
    params: TxParams = {"from": stack.roles.user, "value": Wei(price)}
    receipt = stack.w3.eth.wait_for_transaction_receipt(
        consumer.functions.submit(spec, CALLBACK_GAS).transact(params), timeout=60
    )
    (event,) = stack.escrow.events.JobSubmitted().process_receipt(receipt)
    # Completed: the job ran; its callback burning or reverting does not change the status.
    work.jobs.append(
        _submitted(int(event["args"]["jobId"]), "ok", price, consumer.address, receipt)
    )


def test_hostile_requesters_do_not_stall_the_bridge(tmp_path: Path, fault_db_url: str) -> None:
    db_url = fault_db_url
    with LocalStack(
        tmp_path, block_time=0.5, confirmations=1, database_url=db_url, start_bridge=False
    ) as stack:
        start = RunStart.of(stack)
        work = Workload(stack)
        user = stack.roles.user

        # Hostile specs first: everything after them must still run.
        for app, command, files in (
            (b"\xff\xfe", b"echo x > output/out.txt", ()),
            (b"charityengine:wolframengine", b"echo \xc3\x28 > output/out.txt", ()),
            (
                b"charityengine:wolframengine",
                b"echo y > output/out.txt",
                ((b"in\xfe.txt", b"https://example.org/in.txt"),),
            ),
        ):
            job_id, paid = submit_raw(stack.w3, stack.escrow, user, raw_spec(app, command, files))
            work.jobs.append(
                Submitted(job_id, "hostile-spec", paid, user, tx_hash="", block=start.block)
            )
        work.submit(["ok"] * (ORDINARY // 2))
        _via_consumer(stack, work, "SimulationAwareBurnerConsumer")
        _via_consumer(stack, work, "GasBurnerConsumer")
        _via_consumer(stack, work, "BigRevertConsumer", 1_000_000)
        _submit(stack, work, "output-bomb", "ce-emulator:outputs=2000x1")
        _submit(stack, work, "output-bomb", "ce-emulator:outputs=1x100000000")
        _submit(stack, work, "ce-long-error", "ce-emulator:fail-message=1000000")
        work.submit(["ok"] * (ORDINARY - ORDINARY // 2))

        stack.start_bridge()
        wait_for(work.all_terminal, 240, f"every job terminal: {work.not_terminal()}")
        wait_for(lambda: writes_settled(db_url), 60, "the bridge's writes to settle")
        stack.stop_bridge()

        reasons = {
            int(e["args"]["jobId"]): str(e["args"]["reason"])
            for e in stack.escrow.events.JobFailed().get_logs(from_block=start.block)
        }
        for job in work.jobs:
            if job.kind == "output-bomb":
                assert "outputs too large" in reasons[job.job_id], reasons[job.job_id]
            elif job.kind == "hostile-spec":
                assert "not valid UTF-8" in reasons[job.job_id], reasons[job.job_id]
            elif job.kind == "ce-long-error":
                assert len(reasons[job.job_id].encode()) <= MAX_REASON_BYTES
        engine = create_engine(db_url)
        with Session(engine) as session:
            reverted = session.exec(select(ChainTx).where(col(ChainTx.error) == REVERTED)).all()
        engine.dispose()
        assert len(reverted) <= 2, f"{len(reverted)} operator transactions reverted"
        report = audit(stack, work.jobs, database_url=db_url, start=start)
        print(f"\nhostile: {report.line()}; {len(reverted)} reverted operator transactions")
