"""The naive baseline of the throughput benchmark: no listener loop of the bridge, no database,
no CE: a script that watches for ``JobSubmitted`` events and, straight from each event, sends
one ``acceptJob`` and one ``completeJob`` transaction.

It is naive in what it leaves out (no persistence, no batching, no retries, no CE call, no
reorg handling), not in how it sends: transactions are signed locally with nonces counted in
memory and sent without waiting for receipts, with fixed gas limits instead of an estimate per
transaction. It stops after it has sent the transactions of ``--jobs`` jobs (or at
``--timeout``).

Run: ``BENCH_NAIVE_KEY=0x... python -m bench.naive --rpc URL --escrow ADDRESS --jobs N
--from-block B`` (the key in the environment, not on the command line).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from eth_account import Account
from hexbytes import HexBytes
from web3 import Web3

from bench.common import Signer
from bridge.chain.artifacts import load_artifact

#: Fixed gas limits: acceptJob uses 33,061; completeJob 48,890, or ~69,000 when it creates the
#: treasury's credit slot (the first completion).
ACCEPT_GAS = 45_000
COMPLETE_GAS = 90_000
REMOTE_JOB_ID = "5eed" * 8
RESULT_URI = "https://bridge.example.org/jobs/{job_id}/outputs/"


def run(
    rpc_url: str, escrow_address: str, key: str, jobs: int, from_block: int, timeout: float
) -> int:
    """Watches ``JobSubmitted`` from ``from_block`` and sends accept + complete for each job.

    Returns:
        The number of jobs whose two transactions were sent.
    """
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    escrow = w3.eth.contract(
        address=Web3.to_checksum_address(escrow_address), abi=load_artifact("JobEscrow").abi
    )
    signer = Signer.of(w3, Account.from_key(key))
    topic = HexBytes(escrow.events.JobSubmitted().topic)
    seen: set[int] = set()
    last = from_block - 1
    deadline = time.monotonic() + timeout
    print(f"naive: watching from block {from_block}", flush=True)
    while len(seen) < jobs and time.monotonic() < deadline:
        head = int(w3.eth.block_number)
        if head <= last:
            time.sleep(0.05)
            continue
        # Re-read the last block seen as well: a log query right after a block is mined can miss
        # that block's logs; the seen set drops the repeats.
        logs = w3.eth.get_logs(
            {
                "address": escrow.address,
                "topics": [topic],
                "fromBlock": max(from_block, last),
                "toBlock": head,
            }
        )
        last = head
        for entry in logs:
            job_id = int.from_bytes(bytes(entry["topics"][1]), "big")
            if job_id in seen:
                continue
            seen.add(job_id)
            accept = escrow.encode_abi("acceptJob", args=[job_id, REMOTE_JOB_ID])
            result = Web3.keccak(text=f"result {job_id}")
            uri = RESULT_URI.format(job_id=job_id)
            complete = escrow.encode_abi("completeJob", args=[job_id, result, uri])
            for data, gas in ((accept, ACCEPT_GAS), (complete, COMPLETE_GAS)):
                raw = signer.sign(escrow.address, HexBytes(data), gas)
                w3.eth.send_raw_transaction(HexBytes(raw))
    return len(seen)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--escrow", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--from-block", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    key = os.environ["BENCH_NAIVE_KEY"]
    sent = run(args.rpc, args.escrow, key, args.jobs, args.from_block, args.timeout)
    print(f"naive: sent accept + complete for {sent} jobs", flush=True)
    return 0 if sent == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
