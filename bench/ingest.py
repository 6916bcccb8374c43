"""Ingest and memory: the bridge's log reader over a chain pre-filled with ``JobSubmitted`` events,
and the peak RSS of ``ce-bridge run`` while it tracks those jobs.

``filled_chain(jobs)`` starts an Anvil with automining off, deploys JobEscrow and submits ``jobs``
typical-spec jobs, ``per_block`` to a block (Anvil's own unlocked accounts sign, in JSON-RPC
batches, then ``evm_mine``).

- **ingest**: ``LogReader.fetch`` on the bridge's own provider (``connect()``) over the whole
  range in the ranges the scanner's policy picks (``bridge.engine.scanner.range_sizer`` with
  the default ``max_block_range``: answers of at most ~500 logs), and again in the widest
  ranges (``widest_ranges``: one answer of every log), each against the
  same ``eth_getLogs`` calls sent raw (HTTP + ``json.loads``, no web3 formatting, no decoding);
  also web3's ``get_logs`` alone on that provider (web3's result formatting instead of the
  reader's decoding). ``repeat`` interleaved rounds of the three; each time is their median, the
  ratio the median of the rounds' reader / raw. ``decoder`` says which build of
  ``bridge.chain.submitted`` ran: ``mypyc`` (compiled by ``scripts/setup``) or ``python``.
- **memory**: on the same chain (interval mining switched on), ``ce-bridge run`` as a child
  process with the CE emulator keeping every job Running: the bridge scans the jobs, dispatches
  them and polls them. ``VmHWM`` is read from ``/proc/<pid>/status`` when every job is dispatched
  (or at the time limit).
"""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from bench.common import loadavg, rpc_batch, user_accounts
from bench.emulator import EmulatorProcess
from bench.process import BridgeProcess, read_status_kb
from bench.throughput import bridge_settings
from bridge.chain.artifacts import load_artifact
from bridge.chain.deploy import connect, deploy_escrow
from bridge.chain.deploy import escrow as escrow_at
from bridge.chain.reader import LogReader, RangeSizer, decoder_build
from bridge.config import Settings
from bridge.devchain import Anvil, anvil_key
from bridge.engine.scanner import range_sizer
from tests.builders import spec as typical_spec

#: Anvil accounts whose unlocked keys submit the pre-filled jobs.
FILLERS = range(4, 10)


@dataclass
class FilledChain:
    """An Anvil holding ``jobs`` JobSubmitted events in blocks ``first..last``."""

    node: Anvil
    w3: Web3
    escrow: Contract
    deploy_block: int
    first: int
    last: int
    jobs: int
    fill_seconds: float


@contextlib.contextmanager
def filled_chain(jobs: int, per_block: int = 100) -> Iterator[FilledChain]:
    """An Anvil with ``jobs`` typical-spec submissions, ``per_block`` a block (stopped after)."""
    keys = [anvil_key(i) for i in range(4)]
    admin, operator, _, treasury = (str(a.address) for a in user_accounts(range(4)))
    with Anvil() as node:
        w3 = connect(node.url, keys)
        escrow = escrow_at(w3, deploy_escrow(w3, admin, operators=[operator], treasury=treasury))
        deploy_block = int(w3.eth.block_number)
        abi_spec = typical_spec().to_abi()
        price = int(escrow.functions.quote(abi_spec, 0).call())
        data = escrow.encode_abi("submitJob", args=[abi_spec, 0])
        fillers = [str(a.address) for a in user_accounts(FILLERS)]
        nonces = {
            a: int(w3.eth.get_transaction_count(Web3.to_checksum_address(a))) for a in fillers
        }
        start = time.monotonic()
        rpc_batch(node.url, [("evm_setAutomine", [False])])
        sent = 0
        while sent < jobs:
            calls: list[tuple[str, list[Any]]] = []
            for i in range(min(per_block, jobs - sent)):
                sender = fillers[(sent + i) % len(fillers)]
                tx = {
                    "from": sender,
                    "to": escrow.address,
                    "data": data,
                    "value": hex(price),
                    "gas": hex(150_000),
                    "nonce": hex(nonces[sender]),
                    "maxFeePerGas": hex(200 * 10**9),
                    "maxPriorityFeePerGas": hex(10**9),
                }
                nonces[sender] += 1
                calls.append(("eth_sendTransaction", [tx]))
            rpc_batch(node.url, calls)
            rpc_batch(node.url, [("evm_mine", [])])
            sent += len(calls)
        last = int(w3.eth.block_number)
        fill_seconds = time.monotonic() - start
        topic = Web3.to_hex(HexBytes(escrow.events.JobSubmitted().topic))
        query = {"address": escrow.address, "topics": [topic], "fromBlock": hex(deploy_block)}
        found = len(rpc_batch(node.url, [("eth_getLogs", [{**query, "toBlock": hex(last)}])])[0])
        if found != jobs:
            raise RuntimeError(f"pre-filling put {found} JobSubmitted events on-chain, not {jobs}")
        first = deploy_block + 1
        yield FilledChain(node, w3, escrow, deploy_block, first, last, jobs, fill_seconds)


def widest_ranges(max_block_range: int) -> RangeSizer:
    """Ranges as wide as ``max_block_range`` allows from the start (``RangeSizer``'s defaults):
    the 10,000 events in one answer. The scanner never reads so (``range_sizer``); kept as a
    second figure, the reader's cost on one very large answer."""
    return RangeSizer(max_range=max_block_range)


def ingest(
    chain: FilledChain,
    max_block_range: int = 2000,
    repeat: int = 9,
    sizer: Callable[[int], RangeSizer] = range_sizer,
) -> dict[str, Any]:
    """Times ``LogReader.fetch`` over the filled range against raw and web3 ``eth_getLogs``,
    in the ranges ``sizer`` picks (default: the scanner's own policy, ``range_sizer``).

    ``repeat`` interleaved rounds: a round's ratio moves with Anvil's answer time, which is
    most of the raw baseline (1.1-2.2 from one round to the next on one chain), so the median
    of 9 is steadier than of 5; ``ratio_rounds`` keeps every round's ratio."""
    abi = load_artifact("JobEscrow").abi
    w3 = connect(chain.node.url, timeout=120)  # the bridge's own provider
    reader = LogReader(w3, chain.escrow.address, abi)
    ranges: list[tuple[int, int]] = []

    def read() -> int:
        sizer_now = sizer(max_block_range)
        ranges.clear()
        n = 0
        last = chain.first - 1
        while last < chain.last:
            to_block = min(chain.last, last + sizer_now.size)
            logs = reader.fetch(last + 1, to_block)
            sizer_now.record(len(logs))
            ranges.append((last + 1, to_block))
            n += len(logs)
            last = to_block
        return n

    def raw() -> int:
        n = 0
        for low, high in ranges:
            query = {"address": chain.escrow.address, "fromBlock": hex(low), "toBlock": hex(high)}
            n += len(rpc_batch(chain.node.url, [("eth_getLogs", [query])])[0])
        return n

    def web3_only() -> int:
        n = 0
        for low, high in ranges:
            query = {"address": chain.escrow.address, "fromBlock": low, "toBlock": high}
            n += len(w3.eth.get_logs(query))  # type: ignore[arg-type]
        return n

    # Interleaved rounds (reader, raw, web3, then again): a change in the machine's load hits
    # all three alike; the ratio is the median of the rounds' own ratios.
    times: dict[str, list[float]] = {"reader": [], "raw": [], "web3": []}
    ratios = []
    events = raw_events = 0
    for _ in range(repeat):
        for name, action in (("reader", read), ("raw", raw), ("web3", web3_only)):
            start = time.perf_counter()
            count = action()
            times[name].append(time.perf_counter() - start)
            if name == "reader":
                events = count
            elif name == "raw":
                raw_events = count
        ratios.append(times["reader"][-1] / times["raw"][-1])
    reader_s, raw_s, web3_s = (statistics.median(times[k]) for k in ("reader", "raw", "web3"))
    if raw_events != events:
        raise RuntimeError(f"the reader decoded {events} events, eth_getLogs returned {raw_events}")
    return {
        "events": events,
        "blocks": chain.last - chain.first + 1,
        "ranges": len(ranges),
        "max_block_range": max_block_range,
        "decoder": decoder_build(),
        "reader_seconds": round(reader_s, 3),
        "events_per_second": round(events / reader_s),
        "raw_seconds": round(raw_s, 3),
        "web3_get_logs_seconds": round(web3_s, 3),
        "ratio": round(statistics.median(ratios), 2),
        "ratio_rounds": [round(r, 2) for r in ratios],
        "fill_seconds": round(chain.fill_seconds, 1),
        "load": loadavg(),
    }


def _counts(db: Path) -> tuple[int, int]:
    """(jobs stored, jobs with a remote job) in the bridge's SQLite database, read-only."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
            row = c.execute("SELECT count(*), count(remote_job_id) FROM job").fetchone()
            return int(row[0]), int(row[1])
    except sqlite3.Error:
        return 0, 0


def memory(
    chain: FilledChain, time_limit: float = 180.0, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Peak RSS of ``ce-bridge run`` while it scans, dispatches and polls the chain's jobs.

    Stops at ``time_limit`` seconds if not every job is dispatched by then (reported).
    ``settings``: more bridge settings (e.g. ``max_block_range``).
    """
    rpc_batch(chain.node.url, [("evm_setIntervalMining", [1])])
    with tempfile.TemporaryDirectory(prefix="ce-bench-mem-") as tmp:
        base = Path(tmp)
        db = base / "bridge.db"
        # Jobs run for an hour on the emulator: every one stays open, tracked and polled.
        with EmulatorProcess(base / "emulator", running_seconds=3000.0) as ce:
            config: Settings = bridge_settings(
                chain.node.url,
                chain.escrow.address,
                ce.base_url,
                f"sqlite:///{db}",
                0,
                chain.deploy_block,
                **(settings or {}),
            )
            samples: list[tuple[float, int, int, float]] = []
            with BridgeProcess(config, base / "bridge.log") as bridge:
                start = time.monotonic()
                stored = dispatched = 0
                while time.monotonic() - start < time_limit:
                    time.sleep(1.0)
                    stored, dispatched = _counts(db)
                    rss = (read_status_kb(bridge.pid, "VmRSS") or 0) / 1024
                    samples.append((round(time.monotonic() - start, 1), stored, dispatched, rss))
                    if dispatched >= chain.jobs:
                        break
                # A few poll rounds with every job open.
                time.sleep(3.0)
                peak = bridge.peak_rss_mb()
                rss_end = (read_status_kb(bridge.pid, "VmRSS") or 0) / 1024
                stored, dispatched = _counts(db)
                elapsed = time.monotonic() - start
    stored_at = next((t for t, s, _, _ in samples if s >= chain.jobs), None)
    dispatched_at = next((t for t, _, d, _ in samples if d >= chain.jobs), None)
    return {
        "jobs": chain.jobs,
        "stored": stored,
        "dispatched": dispatched,
        "seconds": round(elapsed, 1),
        "all_stored_after_s": stored_at,
        "all_dispatched_after_s": dispatched_at,
        "peak_rss_mb": round(peak or 0.0, 1),
        "rss_end_mb": round(rss_end, 1),
        "samples": samples[:: max(1, len(samples) // 20)],
        "load": loadavg(),
    }


def run(jobs: int, time_limit: float = 180.0) -> dict[str, Any]:
    """Pre-fills a chain with ``jobs`` jobs, then runs the ingest (in the scanner's ranges, and
    in the widest ranges as ``widest``) and the memory benchmarks."""
    with filled_chain(jobs) as chain:
        reading = ingest(chain)
        reading["widest"] = ingest(chain, repeat=5, sizer=widest_ranges)
        peak = memory(chain, time_limit=time_limit)
    return {"ingest": reading, "memory": peak}
