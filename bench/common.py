"""Shared pieces of the benchmarks: the machine's description, raw JSON-RPC batches, signing and
sending bursts of transactions with explicit nonces, percentiles and bounded waits.

Nothing here asserts on timing: the benchmarks report figures, they never fail on them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import Wei

from bridge.chain.spec import JobSpec
from bridge.devchain import anvil_binary, anvil_key
from bridge.waiting import wait_until

#: Fees every benchmark transaction offers: far above Anvil's base fee even after a run of full
#: blocks, so no transaction waits on its price.
MAX_FEE = 200 * 10**9
PRIORITY_FEE = 10**9


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, memory, CPU, load, Python, Anvil, Node."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo").read().splitlines():  # noqa: SIM115
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in open("/proc/meminfo").read().splitlines()  # noqa: SIM115
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "anvil": _version([anvil_binary(), "--version"]),
        "node": _version(["node", "--version"]),
    }


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.splitlines()[0].replace("Version: ", "").strip() if out.strip() else "unknown"


def loadavg() -> float:
    """The 1-minute load average (the machine has other users: recorded with each figure)."""
    return round(os.getloadavg()[0], 2)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (``/proc/<pid>/stat`` utime + stime,
    all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rpc_batch(
    url: str, calls: Sequence[tuple[str, list[Any]]], timeout: float = 120.0
) -> list[Any]:
    """Sends ``calls`` as one JSON-RPC batch and returns their results in order.

    Raises:
        RuntimeError: any call answered with an error.
    """
    body = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        replies = json.loads(response.read())
    by_id = {reply["id"]: reply for reply in replies}
    out = []
    for i in range(len(calls)):
        reply = by_id[i]
        if "error" in reply:
            raise RuntimeError(f"{calls[i][0]} failed: {reply['error']}")
        out.append(reply.get("result"))
    return out


def user_accounts(indexes: Iterable[int]) -> list[LocalAccount]:
    """Anvil's default accounts ``indexes`` as local signers."""
    return [Account.from_key(anvil_key(i)) for i in indexes]


@dataclass
class Signer:
    """Signs transactions of one account with nonces counted locally (no receipt is awaited)."""

    account: LocalAccount
    chain_id: int
    nonce: int

    @classmethod
    def of(cls, w3: Web3, account: LocalAccount) -> Signer:
        """A signer starting at the account's pending nonce."""
        nonce = int(w3.eth.get_transaction_count(account.address, "pending"))
        return cls(account, int(w3.eth.chain_id), nonce)

    def sign(self, to: str, data: bytes, gas: int, value: int = 0) -> str:
        """Signs one EIP-1559 transaction with the next nonce; returns its raw bytes (0x-hex)."""
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": self.nonce,
                "to": HexStr(to),
                "data": HexBytes(data),
                "gas": gas,
                "value": value,
                "maxFeePerGas": MAX_FEE,
                "maxPriorityFeePerGas": PRIORITY_FEE,
            }
        )
        self.nonce += 1
        return Web3.to_hex(signed.raw_transaction)


def signed_submissions(
    w3: Web3, escrow: Contract, spec: JobSpec, n: int, accounts: Sequence[LocalAccount]
) -> list[str]:
    """``n`` signed ``submitJob(spec, 0)`` transactions, round-robin over ``accounts``, each paying
    the quote, with explicit nonces (ready to send in a burst)."""
    abi_spec = spec.to_abi()
    price = int(escrow.functions.quote(abi_spec, 0).call())
    data = HexBytes(escrow.encode_abi("submitJob", args=[abi_spec, 0]))
    gas = int(
        escrow.functions.submitJob(abi_spec, 0).estimate_gas(
            {"from": accounts[0].address, "value": Wei(price)}
        )
    )
    signers = [Signer.of(w3, a) for a in accounts]
    return [
        signers[i % len(signers)].sign(escrow.address, data, gas + gas // 5, price)
        for i in range(n)
    ]


def send_raw_batch(url: str, raws: Sequence[str], chunk: int = 100) -> list[str]:
    """Sends signed transactions in JSON-RPC batches of ``chunk``; returns their hashes."""
    hashes: list[str] = []
    for start in range(0, len(raws), chunk):
        part = raws[start : start + chunk]
        hashes += rpc_batch(url, [("eth_sendRawTransaction", [raw]) for raw in part])
    return hashes


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Polls ``condition`` until true; returns the monotonic time it became true.

    Raises:
        TimeoutError: not true within ``timeout`` seconds (benchmarks are bounded).
    """
    wait_until(condition, timeout, interval, what)
    return time.monotonic()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
