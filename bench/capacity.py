"""The CE emulator's own capacity: how many jobs a second it serves to a lean client.

Benchmarks must not measure the emulator: a throughput figure means something only while the
emulator can serve several times that rate. ``capacity(base_url)`` drives a running emulator as
the bridge does (``job-create`` with an ``Idempotency-Key``, ``job-status``, then a download of
each output file), ``concurrency`` jobs in flight from a few client processes (asyncio with httpx's
``AsyncClient``), and returns the jobs a second it completed and its CPU time a job. Printed
beside every throughput figure (``bench/throughput.py``).

Run alone: ``python -m bench.capacity [--jobs N] [--workers W]`` (starts its own emulator).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import loadavg, process_cpu_seconds
from bridge.devstack import LOCAL_AUTHENTICATOR
from bridge.engine.service import spec_to_request
from bridge.remote.convention import IDEMPOTENCY_HEADER, JOB_CREATE_PATH, JOB_STATUS_PATH
from tests.builders import spec as typical_spec


def _create_body() -> dict[str, Any]:
    return spec_to_request(typical_spec()).to_body(LOCAL_AUTHENTICATOR)


async def _client(base_url: str, first: int, jobs: int, concurrency: int, run: str) -> int:
    """Drives jobs ``first .. first + jobs - 1`` through the emulator; returns the requests."""
    body = _create_body()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    requests = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(first, first + jobs):
        queue.put_nowait(i)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def one(i: int) -> None:
            nonlocal requests
            created = await client.post(
                JOB_CREATE_PATH, json=body, headers={IDEMPOTENCY_HEADER: f"cap-{run}-{i}"}
            )
            created.raise_for_status()
            job_ref = {"authenticator": LOCAL_AUTHENTICATOR, "jobId": created.json()["jobId"]}
            status = await client.post(JOB_STATUS_PATH, json=job_ref)
            status.raise_for_status()
            requests += 2
            files = status.json().get("outputFiles") or []
            if not files:
                raise RuntimeError("a zero-delay job is not Completed at its first status")
            for f in files:
                got = await client.get(f["url"])
                got.raise_for_status()
                requests += 1

        async def worker() -> None:
            while not queue.empty():
                await one(queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests


def _client_process(
    base_url: str, first: int, jobs: int, concurrency: int, run: str, start_at: float
) -> tuple[int, float, float]:
    """One client process: starts at ``start_at`` (epoch seconds, once every client has
    imported what it needs); returns (requests, start, end)."""
    time.sleep(max(0.0, start_at - time.time()))
    start = time.time()
    requests = asyncio.run(_client(base_url, first, jobs, concurrency, run))
    return requests, start, time.time()


def capacity(
    base_url: str,
    jobs: int = 400,
    concurrency: int = 50,
    server_pids: Sequence[int] = (),
    clients: int = 3,
) -> dict[str, Any]:
    """Jobs a second the emulator at ``base_url`` (its ``.../remotejobs/v2/`` URL) serves:
    create + status + every output file's download, ``concurrency`` jobs at a time spread over
    ``clients`` client processes (one asyncio client would be the bottleneck: httpx costs more
    CPU a request than the emulator); with ``server_pids`` (the emulator's processes) also its
    CPU time a job.

    Raises:
        httpx.HTTPError: the emulator failed a request.
    """
    run = uuid.uuid4().hex[:8]
    share = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    firsts = [sum(share[:i]) for i in range(clients)]
    per_client = max(1, concurrency // clients)
    with ProcessPoolExecutor(clients, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Start the processes (imports take seconds under load), then begin together.
        list(pool.map(time.sleep, [0.0] * clients))
        start_at = time.time() + 1.0
        cpu0 = sum(process_cpu_seconds(pid) for pid in server_pids)
        futures = [
            pool.submit(_client_process, base_url, first, n, per_client, run, start_at)
            for first, n in zip(firsts, share, strict=True)
            if n
        ]
        answers = [f.result() for f in futures]
        cpu = sum(process_cpu_seconds(pid) for pid in server_pids) - cpu0
    requests = sum(a[0] for a in answers)
    seconds = max(a[2] for a in answers) - min(a[1] for a in answers)
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "clients": clients,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(jobs / seconds, 1),
        "requests_per_second": round(requests / seconds),
        # CPU the emulator spent a job, and what one core would serve at that cost: a figure
        # that depends little on what else the machine runs (the wall-clock rate does).
        "server_cpu_ms_per_job": round(cpu / jobs * 1000, 2) if server_pids else None,
        "jobs_per_cpu_second": round(jobs / cpu, 1) if server_pids and cpu > 0 else None,
        "load": loadavg(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Starts a zero-delay emulator and prints its capacity."""
    from bench.emulator import EmulatorProcess

    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="ce-bench-cap-") as tmp,
        EmulatorProcess(Path(tmp)) as ce,
    ):
        print(capacity(ce.base_url, args.jobs, args.concurrency, [ce.pid], args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
