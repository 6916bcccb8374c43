"""``GET /jobs/{id}`` for a submission seen at the head but not yet confirmed: "pending"."""

from __future__ import annotations

from pathlib import Path

import httpx
from web3.types import TxParams, Wei

from bridge.chain.spec import JobSpec, Resources
from bridge.devstack import LocalStack
from bridge.waiting import wait_until


def _wait_for(predicate: object, what: str, timeout: float = 30.0) -> None:
    assert callable(predicate)
    wait_until(predicate, timeout, 0.1, what, error=AssertionError)


def test_a_submission_not_yet_confirmed_is_pending_then_known(tmp_path: Path) -> None:
    spec = JobSpec(
        app="charityengine:wolframengine",
        command_line="echo 1 > output/out.txt",
        specs=Resources(vcpus=1, ram=256, disk=256),
        max_hours=1,
    )
    with LocalStack(tmp_path, block_time=None, confirmations=4) as stack:
        user: TxParams = {"from": stack.roles.user}
        price = stack.escrow.functions.quote(spec.to_abi(), 0).call()
        tx = stack.escrow.functions.submitJob(spec.to_abi(), 0).transact(
            {**user, "value": Wei(price)}
        )
        receipt = stack.w3.eth.wait_for_transaction_receipt(tx)
        with httpx.Client(base_url=stack.api_url, timeout=10) as api:
            assert api.get("/jobs/2").status_code == 404  # never submitted
            answer = api.get("/jobs/1")
            assert answer.status_code == 200
            body = answer.json()
            assert body == {
                "job_id": 1,
                "state": "pending",
                "requester": stack.roles.user,
                "block_number": receipt["blockNumber"],
                "tx_hash": "0x" + bytes(receipt["transactionHash"]).hex(),
                "confirmations": 0,
                "confirmations_required": 4,
            }
            stack.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
            assert api.get("/jobs/1").json()["confirmations"] == 2
            stack.w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
            _wait_for(
                lambda: api.get("/jobs/1").json()["state"] != "pending", "the bridge to store it"
            )
            stored = api.get("/jobs/1").json()
            assert stored["tx_hash"] == body["tx_hash"]
            assert stored["spec"]["command_line"] == spec.command_line
