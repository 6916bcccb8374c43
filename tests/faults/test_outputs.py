"""Large and hostile outputs against ``ce-bridge run`` as a subprocess (issue 9, finding 3).

A job's outputs are streamed to the bridge's file store while hashed, never held whole in
memory: a job with 2 GiB of outputs is processed, and one of its files served back through the
API, while the bridge's peak resident memory (``VmHWM`` of ``/proc/<pid>/status``) stays under
300 MiB. A 300 MiB chunked POST to an admin route without a token is refused at once, without
the process reading it. A bridge killed in the middle of a download leaves only a partial file
that the next start removes, and the job then completes, its files counted once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from web3.types import TxParams, Wei

from bridge.chain.spec import JobSpec, Resources, Status
from bridge.devstack import LocalStack
from bridge.remote.emulator import generated_sha256
from tests.builders import get_job
from tests.faults.harness import BridgeProcess, wait_for
from tests.hostile import chunked_post

MIB = 1024 * 1024
RSS_BOUND_MIB = 300


def _vm_hwm_mib(pid: int) -> float:
    """The process's peak resident set size (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def _submit(stack: LocalStack, command: str) -> int:
    spec = JobSpec(
        app="charityengine:wolframengine",
        command_line=command,
        specs=Resources(vcpus=1, ram=256, disk=256),
        max_hours=1,
    )
    price = int(stack.escrow.functions.quote(spec.to_abi(), 0).call())
    params: TxParams = {"from": stack.roles.user, "value": Wei(price)}
    tx = stack.escrow.functions.submitJob(spec.to_abi(), 0).transact(params)
    receipt = stack.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    (event,) = stack.escrow.events.JobSubmitted().process_receipt(receipt)
    return int(event["args"]["jobId"])


def _status(stack: LocalStack, job_id: int) -> Status:
    return Status(stack.escrow.functions.getJob(job_id).call()[1])


def _remote_id(stack: LocalStack, job_id: int) -> str:
    (accepted,) = [
        e
        for e in stack.escrow.events.JobAccepted().get_logs(from_block=0)
        if int(e["args"]["jobId"]) == job_id
    ]
    return str(accepted["args"]["remoteJobId"])


def test_2_gib_of_outputs_keep_the_bridge_under_300_mib(tmp_path: Path) -> None:
    files, size = 4, 512 * MIB
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        start_bridge=False,
        settings={
            "max_output_bytes": size,
            "max_job_output_bytes": files * size + MIB,  # + the emulator's two small files
            "ce_timeout": 60.0,
        },
    ) as stack:
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            bridge.start()
            wait_for(bridge.started, 60, "the bridge to start")
            assert bridge._process is not None
            pid = bridge._process.pid
            job_id = _submit(stack, f"ce-emulator:outputs={files}x{size}")
            wait_for(
                lambda: _status(stack, job_id).is_terminal,
                600,
                "the 2 GiB job to end",
            )
            assert _status(stack, job_id) is Status.COMPLETED, bridge.tail()
            after_job = _vm_hwm_mib(pid)

            # The files are those CE served, and their manifest hashes to the on-chain hash.
            remote = _remote_id(stack, job_id)
            listing = httpx.get(f"{stack.api_url}/jobs/{job_id}/outputs/", timeout=30).json()
            big = [f for f in listing["files"] if f["path"].startswith("big/")]
            assert len(big) == files
            for entry in big:
                assert entry["size"] == size
                assert entry["sha256"] == generated_sha256(remote, entry["path"], size)
            manifest = "".join(line + "\n" for line in listing["manifest"]).encode()
            on_chain = bytes(get_job(stack.escrow, job_id)["resultHash"])
            assert hashlib.sha256(manifest).digest() == on_chain

            # One 512 MiB file served back by the API, streamed from the store.
            digest = hashlib.sha256()
            with httpx.stream("GET", big[0]["url"], timeout=60) as resp:
                assert resp.status_code == 200
                for chunk in resp.iter_bytes():
                    digest.update(chunk)
            assert digest.hexdigest() == big[0]["sha256"]

            # A 300 MiB chunked admin POST without a token: refused before it is read.
            status, sent = chunked_post(stack.api_url, "/admin/jobs/1/fail", 300 * MIB)
            assert status == 401
            assert sent < 300 * MIB
            peak = _vm_hwm_mib(pid)
            print(
                f"\nbridge peak RSS: {after_job:.0f} MiB after 2 GiB of outputs, {peak:.0f} MiB "
                f"after serving 512 MiB and a refused 300 MiB POST ({sent // MIB} MiB sent)"
            )
            assert peak < RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB"
        finally:
            bridge.close()


def test_a_crash_mid_download_leaves_nothing_behind_and_counts_files_once(
    tmp_path: Path,
) -> None:
    files, size = 2, 256 * MIB
    outputs = tmp_path / "outputs"
    with LocalStack(
        tmp_path,
        block_time=0.5,
        confirmations=1,
        start_bridge=False,
        # Room for the job's files once, not twice: a restart that counted the bytes of the
        # interrupted download again would fail the job as "outputs too large".
        settings={"max_output_bytes": size, "max_job_output_bytes": files * size + MIB},
    ) as stack:
        bridge = BridgeProcess(stack.settings, tmp_path / "bridge.log")
        try:
            bridge.start()
            job_id = _submit(stack, f"ce-emulator:outputs={files}x{size}")

            def downloading() -> bool:
                parts = list((outputs / "tmp").glob("*.part"))
                return any(p.stat().st_size > 16 * MIB for p in parts)

            wait_for(downloading, 300, "a download in progress", interval=0.02)
            bridge.kill()
            assert list((outputs / "tmp").glob("*.part")), "the crash left a partial file"

            bridge.start()
            wait_for(lambda: _status(stack, job_id).is_terminal, 600, "the job to end")
            assert _status(stack, job_id) is Status.COMPLETED, bridge.tail()
            assert not list((outputs / "tmp").iterdir()), "a partial file was left behind"
            stored = {p.name for p in (outputs / "objects").glob("*/*")}
            listing = httpx.get(f"{stack.api_url}/jobs/{job_id}/outputs/", timeout=30).json()
            # Every file in the store is one a row names; the small ones are in their rows.
            inline = stack.settings.output_inline_bytes
            assert stored == {f["sha256"] for f in listing["files"] if f["size"] > inline}
            assert len([f for f in listing["files"] if f["path"].startswith("big/")]) == files
        finally:
            bridge.close()
