"""The CE worker's steps against a real Anvil, the emulator and the bridge's own store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from bridge.engine.service import Bridge
from bridge.engine.states import JobState
from bridge.store.models import Job, OutputFile, RemoteCall
from tests.faults.harness import wait_for
from tests.integration.test_hostile_jobs import _status, _submit


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

            def one_round() -> None:
                bridge.scan_once()
                bridge.work_once()
                bridge.tx_once()

            wait_for(
                lambda: _status(stack, job_id) is Status.COMPLETED,
                120,
                "the job to complete",
                interval=0.05,
                between=one_round,
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
