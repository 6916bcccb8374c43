"""Hostile submissions on a real Anvil with the emulator and the bridge: a spec the bridge cannot
read or run is failed on-chain with a reason and refunded, and the jobs after it go on.

Issue 9, finding 1: a ``submitJob`` whose ``app`` is the bytes ``0xfffe`` (not UTF-8) made the
scanner fail its whole ``eth_getLogs`` range every round, so no later job was ever dispatched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web3.types import TxParams, Wei

from bridge.chain.spec import Status
from bridge.devstack import LocalStack
from tests.faults.harness import job_spec, wait_for
from tests.hostile import raw_spec, submit_raw

GOOD_URL = b"https://example.org/ce-bridge/in.txt"

#: (what, raw spec, words the on-chain reason must contain)
HOSTILE = [
    ("app not UTF-8", raw_spec(app=b"\xff\xfe"), "app is not valid UTF-8"),
    ("command not UTF-8", raw_spec(command_line=b"echo \xc3\x28"), "commandLine is not valid"),
    ("file name not UTF-8", raw_spec(files=((b"in\xff.txt", GOOD_URL),)), "name is not valid"),
    ("URL not UTF-8", raw_spec(files=((b"in.txt", b"https://x.org/\xfe"),)), "URL is not valid"),
    ("absolute name", raw_spec(files=((b"/etc/passwd", GOOD_URL),)), "unsafe file path"),
    ("dot-dot name", raw_spec(files=((b"../up.txt", GOOD_URL),)), "unsafe file path"),
    ("NUL in name", raw_spec(files=((b"in\x00.txt", GOOD_URL),)), "control character"),
    ("long name", raw_spec(files=((b"a" * 300, GOOD_URL),)), "longer than 255"),
    ("not http", raw_spec(files=((b"in.txt", b"file:///etc/passwd"),)), "not http(s)"),
    ("bad port", raw_spec(files=((b"in.txt", b"http://host:99999/x"),)), "malformed URL"),
    ("no host", raw_spec(files=((b"in.txt", b"https:///x"),)), "without a host"),
]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(tmp_path, block_time=0.5, confirmations=1) as running:
        yield running


def _job(stack: LocalStack, job_id: int) -> tuple[Status, int]:
    job = stack.escrow.functions.getJob(job_id).call()
    return Status(job[1]), job_id


def test_unreadable_and_unsafe_specs_are_failed_with_a_reason_and_refunded(
    stack: LocalStack,
) -> None:
    escrow, user = stack.escrow, stack.roles.user
    hostile = {
        what: (*submit_raw(stack.w3, escrow, user, spec), words) for what, spec, words in HOSTILE
    }
    ordinary = []
    for i in range(3):
        spec = job_spec("complete", i)
        price = int(escrow.functions.quote(spec.to_abi(), 0).call())
        params: TxParams = {"from": user, "value": Wei(price)}
        tx = escrow.functions.submitJob(spec.to_abi(), 0).transact(params)
        receipt = stack.w3.eth.wait_for_transaction_receipt(tx)
        (event,) = escrow.events.JobSubmitted().process_receipt(receipt)
        ordinary.append(int(event["args"]["jobId"]))
    everything = [job_id for job_id, _, _ in hostile.values()] + ordinary

    wait_for(
        lambda: all(_job(stack, j)[0].is_terminal for j in everything),
        120,
        "every job terminal on-chain",
    )
    for job_id in ordinary:
        assert _job(stack, job_id)[0] is Status.COMPLETED, f"ordinary job {job_id}"
    failed = {
        int(e["args"]["jobId"]): e["args"]["reason"]
        for e in escrow.events.JobFailed().get_logs(from_block=0)
    }
    for what, (job_id, _, words) in hostile.items():
        assert _job(stack, job_id)[0] is Status.FAILED, what
        assert words in failed[job_id], f"{what}: reason {failed[job_id]!r}"
    # The API shows why, and the spec as read (U+FFFD in place of each byte that is not UTF-8).
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as api:
        for what, (job_id, _, words) in hostile.items():
            shown = api.get(f"/jobs/{job_id}").json()
            assert words in shown["spec_error"], f"{what}: {shown['spec_error']!r}"
        shown = api.get(f"/jobs/{hostile['app not UTF-8'][0]}").json()
        assert shown["spec"]["app"] == "\ufffd\ufffd"
    # Each failure refunded its payment to the requester (credited, pulled with withdraw()).
    refunds = sum(
        int(e["args"]["amount"])
        for e in escrow.events.Credited().get_logs(from_block=0)
        if e["args"]["account"] == user
    )
    assert refunds == sum(payment for _, payment, _ in hostile.values())
