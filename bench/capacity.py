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
import importlib.util
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import loadavg, process_cpu_seconds
from bridge.devstack import LOCAL_AUTHENTICATOR
from bridge.engine.service import spec_to_request
from bridge.remote.convention import (
    F_AUTHENTICATOR,
    F_JOB_ID,
    F_OUTPUT_FILES,
    F_STATUS,
    F_URL,
    IDEMPOTENCY_HEADER,
    JOB_CREATE_PATH,
    JOB_STATUS_PATH,
    CEStatus,
    is_terminal,
)
from tests.builders import spec as typical_spec

#: Seconds between two ``job-status`` calls of a job that is not finished yet (none, at zero
#: delays: a job is Completed at its first status).
POLL_INTERVAL = 0.05


def _create_body() -> dict[str, Any]:
    return spec_to_request(typical_spec()).to_body(LOCAL_AUTHENTICATOR)


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just what the emulator's API needs: requests
    with a ``Content-Length`` body, answers with a ``Content-Length`` body. Far cheaper a request
    than httpx (no pool, no header objects, no URL parsing), so that the capacity measures the
    emulator and not its client."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        """Sends one request and returns (status, body) of its answer. A kept-alive connection
        that the server has closed meanwhile (its keep-alive timeout) is reopened and the request
        sent once more: every request here is safe to repeat (a ``job-create`` has its
        ``Idempotency-Key``).

        Raises:
            RuntimeError: the answer has no ``Content-Length`` (not something the API sends).
            OSError, asyncio.IncompleteReadError: the connection failed or was closed.
        """
        message = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
        ).encode() + body
        reused = self._streams is not None
        try:
            return await self._exchange(message, f"{method} {path}")
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        return await self._exchange(message, f"{method} {path}")

    async def _exchange(self, message: bytes, what: str) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(message)
        answer = await reader.readuntil(b"\r\n\r\n")
        status = int(answer[9:12])
        for line in answer.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return status, await reader.readexactly(int(value))
        raise RuntimeError(f"{what}: an answer without Content-Length")

    def close(self) -> None:
        """Closes the connection (if it was opened)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _ok(status: int, body: bytes, what: str) -> bytes:
    if status != 200:
        raise RuntimeError(f"{what}: HTTP {status}: {body[:200]!r}")
    return body


async def _client(base_url: str, first: int, jobs: int, concurrency: int, run: str) -> int:
    """Drives jobs ``first .. first + jobs - 1`` through the emulator, ``concurrency`` at a time
    on as many keep-alive connections; returns the requests made.

    Each job: ``job-create`` with an ``Idempotency-Key``, ``job-status`` until Completed, then a
    GET of each output file, every answer checked (a 200 and the expected shape).
    """
    url = urlsplit(base_url)
    host, port, prefix = url.hostname or "127.0.0.1", url.port or 80, url.path
    create = json.dumps(_create_body()).encode()
    requests = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(first, first + jobs):
        queue.put_nowait(i)

    async def one(conn: _Connection, i: int) -> None:
        nonlocal requests
        created = _ok(
            *await conn.request(
                "POST", prefix + JOB_CREATE_PATH, create, f"{IDEMPOTENCY_HEADER}: cap-{run}-{i}\r\n"
            ),
            JOB_CREATE_PATH,
        )
        ref = json.dumps(
            {F_AUTHENTICATOR: LOCAL_AUTHENTICATOR, F_JOB_ID: json.loads(created)[F_JOB_ID]}
        )
        requests += 1
        while True:
            status = json.loads(
                _ok(
                    *await conn.request("POST", prefix + JOB_STATUS_PATH, ref.encode()),
                    JOB_STATUS_PATH,
                )
            )
            requests += 1
            if is_terminal(status[F_STATUS]):
                break
            await asyncio.sleep(POLL_INTERVAL)
        files = status.get(F_OUTPUT_FILES) or []
        if status[F_STATUS] != CEStatus.COMPLETED or not files:
            raise RuntimeError(f"job {i} ended {status[F_STATUS]} with {len(files)} output files")
        for f in files:
            _ok(*await conn.request("GET", urlsplit(f[F_URL]).path), "an output file")
            requests += 1

    async def worker() -> None:
        conn = _Connection(host, port)
        try:
            while not queue.empty():
                await one(conn, queue.get_nowait())
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests


def _client_process(
    base_url: str, first: int, jobs: int, concurrency: int, run: str, start_at: float
) -> tuple[int, float, float, float]:
    """One client process (on uvloop when it is installed): starts at ``start_at`` (epoch
    seconds, once every client has imported what it needs); returns (requests, start, end,
    its CPU seconds)."""
    time.sleep(max(0.0, start_at - time.time()))
    start = time.time()
    cpu0 = time.process_time()
    coroutine = _client(base_url, first, jobs, concurrency, run)
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        requests = uvloop.run(coroutine)
    else:
        requests = asyncio.run(coroutine)
    return requests, start, time.time(), time.process_time() - cpu0


def capacity(
    base_url: str,
    jobs: int = 1000,
    concurrency: int = 50,
    server_pids: Sequence[int] = (),
    clients: int = 1,
) -> dict[str, Any]:
    """Jobs a second the emulator at ``base_url`` (its ``.../remotejobs/v2/`` URL) serves:
    create + status + every output file's download, ``concurrency`` jobs at a time spread over
    ``clients`` client processes, each job on one keep-alive connection (``_Connection``: a
    client much cheaper a request than the emulator, whose own CPU a job is printed beside);
    with ``server_pids`` (the emulator's processes, all its workers) also the emulator's CPU
    time a job and the jobs one CPU-second of it serves.

    Raises:
        RuntimeError: the emulator failed a request or answered something unexpected.
        OSError: a connection failed.
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
        # The client's own cost: the figure measures the emulator while this stays well below.
        "client_cpu_ms_per_job": round(sum(a[3] for a in answers) / jobs * 1000, 2),
        "load": loadavg(),
    }


def summary(cap: dict[str, Any], rate: float | None = None) -> str:
    """One line for a ``capacity()`` result, to print beside a throughput figure: the wall rate
    (and how many times ``rate``, the jobs a second being measured, it is), the emulator's CPU a
    job and the jobs one CPU-second of it serves, the client's CPU a job and the load."""
    times = f" = {cap['jobs_per_second'] / rate:.1f} x the measured {rate:g}" if rate else ""
    processes = f"{cap['clients']} client process{'' if cap['clients'] == 1 else 'es'}"
    return (
        f"{cap['jobs_per_second']} jobs/s wall{times} ({cap['concurrency']} in flight from "
        f"{processes}); {cap['server_cpu_ms_per_job']} ms of emulator CPU a job = "
        f"{cap['jobs_per_cpu_second']} jobs a CPU-second; client {cap['client_cpu_ms_per_job']} "
        f"ms a job; load {cap['load']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Starts a zero-delay emulator and prints its capacity."""
    from bench.emulator import EmulatorProcess

    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--clients", type=int, default=1)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="ce-bench-cap-") as tmp,
        EmulatorProcess(Path(tmp)) as ce,
    ):
        cap = capacity(ce.base_url, args.jobs, args.concurrency, [ce.pid], args.clients)
        print(cap)
        print(summary(cap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
