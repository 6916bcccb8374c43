"""The CE worker's steps against a real Anvil, the emulator and the bridge's own store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.engine.codec import SPEC_HASH_MISMATCH
from bridge.engine.service import Bridge
from bridge.engine.states import JobState
from bridge.remote.emulator import EmulatorConfig
from bridge.store.models import Job, OutputFile, RemoteCall, RemoteCancel
from tests.faults.harness import bridge_round, wait_for
from tests.integration.test_hostile_jobs import _reason, _status, _submit


def test_a_poll_that_finds_the_job_done_stores_its_status_and_outputs_in_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalStack(tmp_path, block_time=None, confirmations=0, start_bridge=False) as stack:
        bridge = Bridge.from_settings(stack.settings)
        try:
            job_id = _submit(stack, "echo done > output/out.txt")
            committed: list[str] = []  # the job's state after each group change of it
            batch = bridge.store.batch

            def recorded(change: Any, changed: int | None = None) -> Any:
                result = batch(change, changed)
                if changed == job_id:
                    with Session(bridge.db) as session:
                        job = session.get(Job, job_id)
                        assert job is not None
                        committed.append(job.state)
                return result

            monkeypatch.setattr(bridge.store, "batch", recorded)

            wait_for(
                lambda: _status(stack, job_id) is Status.COMPLETED,
                120,
                "the job to complete",
                interval=0.05,
                between=lambda: bridge_round(bridge),
            )
            assert JobState.SETTLING in committed
            assert JobState.FINISHING not in committed, committed
            with Session(bridge.db) as session:
                kinds = session.exec(
                    select(RemoteCall.kind, RemoteCall.detail).where(
                        col(RemoteCall.job_id) == job_id
                    )
                ).all()
                files = session.exec(
                    select(OutputFile.path).where(col(OutputFile.job_id) == job_id)
                ).all()
            assert ("status", "Completed") in kinds and any(k == "download" for k, _ in kinds)
            assert files
        finally:
            bridge.stop()


def test_the_scanner_records_the_bridges_own_accept_and_running_writes(tmp_path: Path) -> None:
    # Jobs stay running on CE: their Accepted and Running writes are the only status logs, so
    # the scanner raises each job's on-chain status from them without loading its row.
    config = EmulatorConfig(provisioning_seconds=0, downloading_seconds=0, running_seconds=3600)
    with LocalStack(
        tmp_path, block_time=None, confirmations=0, start_bridge=False, emulator_config=config
    ) as stack:
        bridge = Bridge.from_settings(stack.settings)
        try:
            jobs = [_submit(stack, f"sleep 3600 # {i}") for i in range(3)]

            def recorded() -> bool:
                with Session(bridge.db) as session:
                    rows = [session.get(Job, j) for j in jobs]
                return all(r is not None and r.onchain_status == Status.RUNNING for r in rows)

            wait_for(
                recorded,
                120,
                "the Running writes to be scanned",
                between=lambda: bridge_round(bridge),
            )
            assert all(_status(stack, j) is Status.RUNNING for j in jobs)
        finally:
            bridge.stop()


def test_a_stored_spec_that_no_longer_hashes_to_its_spechash_is_failed_not_sent(
    tmp_path: Path,
) -> None:
    # The spec sent to CE must be the one the requester paid for. A stored spec changed after
    # the scan (a decoder or storage fault, here an edit of its row) fails its job on-chain,
    # refunded, with no job-create; the job beside it runs as usual. The row also says that a
    # job-create was sent and its answer lost: the cancel outbox, which would look for that
    # remote job by sending the stored request again under its key, must not send this one.
    with LocalStack(tmp_path, block_time=None, confirmations=0, start_bridge=False) as stack:
        bridge = Bridge.from_settings(stack.settings)
        try:
            changed = _submit(stack, "echo paid-for > output/out.txt")
            kept = _submit(stack, "echo kept > output/out.txt")
            wait_for(lambda: bool(bridge.scan_once()) and _stored(bridge, changed), 60, "scan")
            with Session(bridge.db) as session:
                job = session.get(Job, changed)
                assert job is not None and b"paid-for" in job.spec_abi
                # The same length: still a well-formed encoding, of a spec nobody paid for.
                job.spec_abi = job.spec_abi.replace(b"paid-for", b"paid-far")
                job.create_sent_at = time.time()
                session.add(job)
                session.commit()

            wait_for(
                lambda: (
                    {_status(stack, changed), _status(stack, kept)}
                    == {Status.FAILED, Status.COMPLETED}
                ),
                120,
                "both jobs to end",
                interval=0.05,
                between=lambda: bridge_round(bridge),
            )
            assert _status(stack, changed) is Status.FAILED
            assert _reason(stack, changed) == f"invalid job spec: {SPEC_HASH_MISMATCH}"
            assert stack.emulator is not None
            stats = httpx.get(stack.emulator.url + "_emulator/stats").json()
            assert stats["jobs"] == 1  # the kept job's only
            assert not [k for k in stats["by_key"] if k.endswith(f":{changed}")]
            with Session(bridge.db) as session:
                rows = session.exec(
                    select(RemoteCancel).where(col(RemoteCancel.job_id) == changed)
                ).all()
            assert [(r.request_json, r.done_at is not None) for r in rows] == [("", True)]
        finally:
            bridge.stop()


def _stored(bridge: Bridge, job_id: int) -> bool:
    with Session(bridge.db) as session:
        return session.get(Job, job_id) is not None
