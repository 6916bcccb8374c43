"""Throughput and latency: jobs through the real bridge against a naive baseline.

Both runs use a fresh Anvil with 1-second interval mining and the typical spec of
``tests/builders.py``. Jobs are signed beforehand (``submitJob`` from six Anvil accounts, explicit
nonces) and sent either in one burst (JSON-RPC batches, no receipt awaited) or at a steady pace.

- **bridge**: ``ce-bridge run`` as a child process (``bench.process``), with the CE emulator at zero
  delays served from this process, SQLite, and ``BRIDGE_CONFIRMATIONS`` as asked.
- **naive**: ``bench.naive`` as a child process: one ``acceptJob`` and one ``completeJob``
  transaction per ``JobSubmitted`` event, no database, no CE.

A run's time is wall-clock from the first submission sent until every job's ``JobCompleted`` is
on-chain (polled every 0.1 s). Latencies come from the chain: the timestamps (and numbers) of the
blocks holding each job's ``JobSubmitted``, ``JobAccepted`` and ``JobCompleted``; with 1-second
blocks they are whole seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract

from bench.capacity import capacity
from bench.common import (
    loadavg,
    percentile,
    rpc_batch,
    send_raw_batch,
    signed_submissions,
    user_accounts,
    wait_for,
)
from bench.emulator import EmulatorProcess
from bench.process import BridgeProcess
from bridge.chain.deploy import connect, deploy_escrow
from bridge.chain.deploy import escrow as escrow_at
from bridge.config import Settings, load_settings
from bridge.devchain import Anvil, anvil_key, free_port
from bridge.devstack import LOCAL_AUTHENTICATOR
from tests.builders import spec as typical_spec

#: Anvil accounts that submit jobs (0..3 are the stack's admin, operator, user and treasury).
USERS = range(4, 10)
BLOCK_TIME = 1.0


@dataclass
class RunResult:
    """One run of jobs through the bridge or the naive baseline.

    Attributes:
        who: ``bridge`` or ``naive``.
        jobs: jobs submitted (all of them completed, or the run raised).
        confirmations: ``BRIDGE_CONFIRMATIONS`` (0 for the naive script, which acts at once).
        pace: seconds between submissions; 0 for a burst.
        send_seconds: time to send every submission.
        seconds: first submission sent -> every ``JobCompleted`` seen on-chain.
        jobs_per_second: ``jobs / seconds``.
        blocks: first submission's block .. last completion's block, inclusive.
        latency: p50/p95 in seconds (block timestamps) and blocks, submission mined -> accept
            mined and -> completion mined.
        peak_rss_mb: the bridge's VmHWM at the end (None for the naive run).
        cpu_seconds: CPU time (user + system) the bridge or naive process used in the run.
        load: the 1-minute load average when the run ended.
        operator_txs: transactions the operator sent.
        emulator: the CE emulator beside the figure: its CPU during the run (``cpu_seconds``,
            ``cpu_ms_per_job``) and, measured after the run, its ``capacity``
            (``bench.capacity``).
        cpu_ms_per_job: the bridge's CPU a job, in milliseconds.
    """

    who: str
    jobs: int
    confirmations: int
    pace: float
    send_seconds: float = 0.0
    seconds: float = 0.0
    jobs_per_second: float = 0.0
    blocks: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None
    load: float = 0.0
    operator_txs: int = 0
    emulator: dict[str, Any] = field(default_factory=dict)
    cpu_ms_per_job: float | None = None


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _topic(contract: Contract, name: str) -> HexBytes:
    return HexBytes(contract.events[name]().topic)


def _job_blocks(w3: Web3, escrow: Contract, name: str, from_block: int) -> dict[int, int]:
    """job id -> block number of its first ``name`` event at or after ``from_block``."""
    logs = w3.eth.get_logs(
        {
            "address": escrow.address,
            "topics": [_topic(escrow, name)],
            "fromBlock": from_block,
            "toBlock": "latest",
        }
    )
    found: dict[int, int] = {}
    for entry in logs:
        job_id = int.from_bytes(bytes(entry["topics"][1]), "big")
        found.setdefault(job_id, int(entry["blockNumber"]))
    return found


def _timestamps(url: str, blocks: set[int]) -> dict[int, int]:
    numbers = sorted(blocks)
    replies = rpc_batch(url, [("eth_getBlockByNumber", [hex(b), False]) for b in numbers])
    return {b: int(r["timestamp"], 16) for b, r in zip(numbers, replies, strict=True)}


def latency_figures(
    url: str, submitted: dict[int, int], accepted: dict[int, int], completed: dict[int, int]
) -> dict[str, float]:
    """p50/p95 of submission -> accept and submission -> completion, in seconds and blocks.

    A job completed without an accept write counts its completion as its accept.
    """
    jobs = [j for j in submitted if j in completed]
    stamps = _timestamps(url, {*submitted.values(), *accepted.values(), *completed.values()})
    out: dict[str, float] = {}
    for name, ends in (("accept", accepted), ("complete", completed)):
        secs = [stamps[ends.get(j, completed[j])] - stamps[submitted[j]] for j in jobs]
        blocks = [ends.get(j, completed[j]) - submitted[j] for j in jobs]
        for q in (50, 95):
            out[f"{name}.p{q}.s"] = round(percentile(secs, q), 2)
            out[f"{name}.p{q}.blocks"] = round(percentile(blocks, q), 2)
    return out


def _send(url: str, raws: Sequence[str], pace: float) -> None:
    if pace <= 0:
        send_raw_batch(url, raws)
        return
    start = time.monotonic()
    for i, raw in enumerate(raws):
        delay = start + i * pace - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rpc_batch(url, [("eth_sendRawTransaction", [raw])])


def _finish(
    result: RunResult,
    w3: Web3,
    escrow: Contract,
    url: str,
    start_block: int,
    t0: float,
    t1: float,
    operator: str,
) -> RunResult:
    submitted = _job_blocks(w3, escrow, "JobSubmitted", start_block)
    accepted = _job_blocks(w3, escrow, "JobAccepted", start_block)
    completed = _job_blocks(w3, escrow, "JobCompleted", start_block)
    result.seconds = round(t1 - t0, 2)
    result.jobs_per_second = round(result.jobs / (t1 - t0), 1)
    result.blocks = max(completed.values()) - min(submitted.values()) + 1
    result.latency = latency_figures(url, submitted, accepted, completed)
    result.load = loadavg()
    result.operator_txs = int(w3.eth.get_transaction_count(Web3.to_checksum_address(operator)))
    return result


@contextlib.contextmanager
def _profiler(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy sampling process ``pid`` while the block runs (nothing when ``output`` is None)."""
    if output is None:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    command += os.environ.get("BENCH_PYSPY_ARGS", "").split()
    child = subprocess.Popen(
        [*command, "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def bridge_settings(
    rpc_url: str,
    contract: str,
    ce_url: str,
    database_url: str,
    confirmations: int,
    start_block: int,
    **extra: Any,
) -> Settings:
    """The bridge's settings in the benchmarks: LocalStack's intervals (scan 0.25 s, CE poll
    0.25 s, transaction manager 0.2 s), Anvil's account 1 as the operator, ``extra`` on top."""
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "contract_address": contract,
        "operator_key": anvil_key(1),
        "ce_url": ce_url,
        "ce_authenticator": LOCAL_AUTHENTICATOR,
        "database_url": database_url,
        "confirmations": confirmations,
        "start_block": start_block,
        "api_port": free_port(),
        "scan_interval": 0.25,
        "poll_interval": 0.25,
        "tx_interval": 0.2,
    }
    return load_settings(**{**values, **extra})


class _Completions:
    """Counts ``JobCompleted`` logs incrementally with raw ``eth_getLogs`` (no decoding), so the
    benchmark's polling costs little next to what it measures."""

    def __init__(self, url: str, escrow: Contract, from_block: int) -> None:
        self._url = url
        self._address = escrow.address
        self._topic = Web3.to_hex(_topic(escrow, "JobCompleted"))
        self._next = from_block
        self.count = 0

    def poll(self) -> int:
        head = int(rpc_batch(self._url, [("eth_blockNumber", [])])[0], 16)
        if head >= self._next:
            query = {
                "address": self._address,
                "topics": [self._topic],
                "fromBlock": hex(self._next),
                "toBlock": hex(head),
            }
            self.count += len(rpc_batch(self._url, [("eth_getLogs", [query])])[0])
            self._next = head + 1
        return self.count


def _deploy(url: str) -> tuple[Web3, Contract]:
    keys = [anvil_key(i) for i in range(4)]
    admin, operator, _, treasury = (str(a.address) for a in user_accounts(range(4)))
    w3 = connect(url, keys)
    escrow = escrow_at(w3, deploy_escrow(w3, admin, operators=[operator], treasury=treasury))
    return w3, escrow


def bridge_run(
    jobs: int,
    *,
    confirmations: int = 0,
    pace: float = 0.0,
    timeout: float = 300.0,
    workdir: Path | None = None,
    settings: dict[str, Any] | None = None,
    profile: Path | None = None,
    measure_capacity: bool = True,
    answer_delay: float = 0.0,
) -> RunResult:
    """Submits ``jobs`` jobs (a burst, or one every ``pace`` seconds) to a fresh Anvil, with
    ``ce-bridge run`` and the zero-delay CE emulator as child processes; returns once all are
    Completed on-chain.

    ``settings``: more bridge settings; ``profile``: a file for py-spy's collapsed stacks of
    the bridge process during the run (py-spy must be installed; ``BENCH_PYSPY_ARGS`` adds
    options such as ``--idle`` or ``--gil``); ``measure_capacity``: measure the emulator's
    capacity after the run (``bench.capacity``, ~5-15 s, with ``answer_delay`` back at 0: what
    the emulator itself can serve); ``answer_delay``: seconds the emulator holds each answer
    back (a far server's latency, ``EmulatorConfig.answer_delay``).

    Raises:
        TimeoutError: not all completed within ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="ce-bench-") as tmp:
        base = workdir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        with (
            Anvil(block_time=BLOCK_TIME) as node,
            EmulatorProcess(base / "emulator", answer_delay=answer_delay) as ce,
        ):
            w3, escrow = _deploy(node.url)
            raws = signed_submissions(w3, escrow, typical_spec(), jobs, user_accounts(USERS))
            start_block = int(w3.eth.block_number)
            config = bridge_settings(
                node.url,
                escrow.address,
                ce.base_url,
                f"sqlite:///{base / 'bridge.db'}",
                confirmations,
                start_block,
                **(settings or {}),
            )
            result = RunResult("bridge", jobs, confirmations, pace)
            with (
                BridgeProcess(config, base / "bridge.log") as bridge,
                _profiler(bridge.pid, profile),
            ):
                cpu0 = bridge.cpu_seconds() or 0.0
                emulator_cpu0 = ce.cpu_seconds()
                completions = _Completions(node.url, escrow, start_block)
                t0 = time.monotonic()
                _send(node.url, raws, pace)
                result.send_seconds = round(time.monotonic() - t0, 2)
                t1 = wait_for(
                    lambda: completions.poll() >= jobs,
                    timeout,
                    f"{jobs} jobs completed by the bridge",
                )
                result.peak_rss_mb = bridge.peak_rss_mb()
                result.cpu_seconds = round((bridge.cpu_seconds() or 0.0) - cpu0, 2)
                result.cpu_ms_per_job = round(result.cpu_seconds / jobs * 1000, 2)
                emulator_cpu = ce.cpu_seconds() - emulator_cpu0
            if measure_capacity:
                # The same emulator process, once the bridge has stopped: what it can serve.
                if answer_delay:
                    _reconfigure(ce.url, {"answer_delay": 0.0})
                result.emulator["capacity"] = capacity(ce.base_url, server_pids=[ce.pid])
            result.emulator["cpu_seconds"] = round(emulator_cpu, 2)
            result.emulator["cpu_ms_per_job"] = round(emulator_cpu / jobs * 1000, 2)
            operator = str(user_accounts([1])[0].address)
            return _finish(result, w3, escrow, node.url, start_block, t0, t1, operator)


def _reconfigure(emulator_url: str, update: dict[str, Any]) -> None:
    """``POST /_emulator/config`` (``emulator_url``: the emulator's root URL)."""
    request = urllib.request.Request(
        emulator_url + "/_emulator/config",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        reply.read()


def naive_run(jobs: int, *, pace: float = 0.0, timeout: float = 300.0) -> RunResult:
    """The same submissions as ``bridge_run`` on a fresh Anvil, handled by ``bench.naive``.

    Raises:
        TimeoutError: not all completed within ``timeout`` seconds.
    """
    operator_key = anvil_key(1)
    operator = str(user_accounts([1])[0].address)
    with Anvil(block_time=BLOCK_TIME) as node, tempfile.TemporaryDirectory() as tmp:
        w3, escrow = _deploy(node.url)
        raws = signed_submissions(w3, escrow, typical_spec(), jobs, user_accounts(USERS))
        start_block = int(w3.eth.block_number)
        out_path = Path(tmp) / "naive.log"
        command = [
            sys.executable,
            "-m",
            "bench.naive",
            "--rpc",
            node.url,
            "--escrow",
            escrow.address,
            "--jobs",
            str(jobs),
            "--from-block",
            str(start_block),
            "--timeout",
            str(timeout),
        ]
        env = {**os.environ, "BENCH_NAIVE_KEY": operator_key}
        with out_path.open("wb") as out:
            child = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                wait_for(lambda: b"watching" in out_path.read_bytes(), 60, "the naive script")
                result = RunResult("naive", jobs, 0, pace)
                cpu0 = _cpu_seconds(child.pid)
                t0 = time.monotonic()
                _send(node.url, raws, pace)
                result.send_seconds = round(time.monotonic() - t0, 2)
                completions = _Completions(node.url, escrow, start_block)
                t1 = wait_for(
                    lambda: completions.poll() >= jobs,
                    timeout,
                    f"{jobs} jobs completed by the naive script",
                )
                result.cpu_seconds = round(_cpu_seconds(child.pid) - cpu0, 2)
                result.cpu_ms_per_job = round(result.cpu_seconds / jobs * 1000, 2)
            finally:
                if child.poll() is None:
                    child.kill()
                child.wait()
        return _finish(result, w3, escrow, node.url, start_block, t0, t1, operator)


def throughput(jobs: int, timeout: float = 300.0) -> dict[str, Any]:
    """The burst of ``jobs`` through the bridge (confirmations 0) and the naive baseline."""
    bridge = bridge_run(jobs, confirmations=0, timeout=timeout)
    naive = naive_run(jobs, timeout=timeout)
    return {
        "bridge": asdict(bridge),
        "naive": asdict(naive),
        "ratio": round(bridge.seconds / naive.seconds, 2),
    }


def latency(jobs: int, pace: float, timeout: float = 300.0) -> dict[str, Any]:
    """Jobs at a steady ``pace`` through the bridge at confirmations 0 and 2."""
    return {
        f"confirmations{c}": asdict(
            bridge_run(jobs, confirmations=c, pace=pace, timeout=timeout, measure_capacity=False)
        )
        for c in (0, 2)
    }


#: Seconds the emulator holds each answer back in ``ce_latency``: a CE server ~50 ms away.
CE_ANSWER_DELAY = 0.05
#: ``BRIDGE_CE_CONCURRENCY`` values ``ce_latency`` compares: the default before the seventh
#: session, the default since, and four times that.
CE_CONCURRENCIES = (16, 32, 128)


def ce_latency(
    jobs: int,
    answer_delay: float = CE_ANSWER_DELAY,
    concurrencies: Sequence[int] = CE_CONCURRENCIES,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """The burst of ``jobs`` through the bridge with CE answering every call after
    ``answer_delay`` seconds, once per ``BRIDGE_CE_CONCURRENCY`` in ``concurrencies``: a job
    makes ~4 CE calls, so the worker finishes at most concurrency / (4 x answer_delay) a
    second however fast the rest is."""
    runs = {
        str(c): asdict(
            bridge_run(
                jobs, timeout=timeout, settings={"ce_concurrency": c}, answer_delay=answer_delay
            )
        )
        for c in concurrencies
    }
    return {"answer_delay": answer_delay, "runs": runs}
