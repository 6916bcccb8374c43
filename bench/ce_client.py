"""CPU of the bridge's CE client a job: ``CEClient`` alone against the lean emulator.

Each job makes the calls the bridge's worker makes for it: ``create_job`` (the typical spec of
``tests/builders.py``), ``job_status`` (the zero-delay emulator answers Completed at once) and
``download_into`` of each output file, into an ``OutputStore`` partial that is committed
(``--sink store``, as the worker does) or into a sink that drops the bytes (``--sink null``,
the client alone). Jobs run from ``--threads`` threads (the worker's 16) through one shared
client; the emulator runs in its own process (``bench.emulator``).

Prints, for each round: jobs, wall seconds, CPU ms a job and a request (``time.process_time``
of this process: user + system, every thread) and the load. A warm-up round (not counted)
opens the connections first.

Run: ``python -m bench.ce_client [--jobs N] [--rounds R] [--threads T] [--sink store|null]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import loadavg
from bench.emulator import EmulatorProcess
from bridge.devstack import LOCAL_AUTHENTICATOR
from bridge.engine.codec import spec_to_request
from bridge.outputs import OutputStore
from bridge.remote.client import CEClient
from bridge.remote.convention import CEJobRequest, CEStatus, idempotency_key
from tests.builders import spec as typical_spec

CONTRACT = "0x52908400098527886e0f7030069857d2e4169ee7"


class _NullSink:
    """A ``DownloadSink`` that counts the bytes and drops them."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)

    def restart(self) -> None:
        self.size = 0


class _Job:
    """One job's calls, counting the requests sent."""

    def __init__(self, client: CEClient, request: CEJobRequest, store: OutputStore | None):
        self._client = client
        self._request = request
        self._store = store
        self._lock = threading.Lock()
        self.requests = 0

    def __call__(self, number: int) -> None:
        remote = self._client.create_job(self._request, idempotency_key(1, CONTRACT, number))
        status = self._client.job_status(remote)
        if status.status is not CEStatus.COMPLETED:
            raise RuntimeError(f"job {remote} is {status.status}, not Completed")
        for output in status.output_files:
            if self._store is None:
                self._client.download_into(output.url, _NullSink())
            else:
                with self._store.partial() as part:
                    self._client.download_into(output.url, part)
                    part.commit()
        with self._lock:
            self.requests += 2 + len(status.output_files)


def run(jobs: int, rounds: int, threads: int, sink: str) -> list[dict[str, Any]]:
    """Drives ``rounds`` rounds of ``jobs`` jobs through one client; returns a figure a round."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ce-client-bench-") as tmp:
        base = Path(tmp)
        store = OutputStore(base / "outputs") if sink == "store" else None
        request = spec_to_request(typical_spec())
        with (
            EmulatorProcess(base / "emulator") as ce,
            CEClient(ce.base_url, LOCAL_AUTHENTICATOR) as client,
            ThreadPoolExecutor(threads) as pool,
        ):
            numbers = iter(range(1, sys.maxsize))
            job = _Job(client, request, store)
            list(pool.map(job, [next(numbers) for _ in range(threads * 4)]))  # warm-up
            for _ in range(rounds):
                job.requests = 0
                batch = [next(numbers) for _ in range(jobs)]
                cpu0, wall0 = time.process_time(), time.monotonic()
                list(pool.map(job, batch))
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                results.append(
                    {
                        "jobs": jobs,
                        "requests": job.requests,
                        "wall_seconds": round(wall, 2),
                        "cpu_ms_per_job": round(cpu / jobs * 1000, 3),
                        "cpu_ms_per_request": round(cpu / job.requests * 1000, 3),
                        "load": loadavg(),
                    }
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the rounds and prints one JSON line a round."""
    parser = argparse.ArgumentParser(prog="python -m bench.ce_client", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--sink", choices=("store", "null"), default="store")
    args = parser.parse_args(argv)
    print(f"pid {os.getpid()}, {args.threads} threads, sink {args.sink}", flush=True)
    for figure in run(args.jobs, args.rounds, args.threads, args.sink):
        print(json.dumps(figure), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
