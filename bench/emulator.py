"""The CE emulator in its own process for the benchmarks: every phase at zero seconds, no access
log, so that neither the benchmark's own work nor logging slows the CE side down.

Lean, so that the benchmarks measure the bridge and not the emulator (``bench/capacity.py``
measures what it serves): the bare ASGI app (``create_lean_emulator_app``: the same
``Emulator`` state and answers, no FastAPI, no fault injection), the jobs' output files held in
memory (no file system work a job), uvicorn on ``httptools`` and ``uvloop`` (dev dependencies;
the pure-Python defaults otherwise).

Run: ``python -m bench.emulator --port P --data-dir DIR``. ``EmulatorProcess`` starts it, waits
until it answers, and always stops it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import uvicorn

from bench.common import process_cpu_seconds
from bridge.devchain import free_port
from bridge.lifecycle import Service, start_process, stop_process_group
from bridge.remote.emulator import API_PREFIX, EmulatorConfig, create_lean_emulator_app

#: The CE emulator with every phase at zero: a job is Completed as soon as it is created.
ZERO_DELAYS = EmulatorConfig(provisioning_seconds=0, downloading_seconds=0, running_seconds=0)


class EmulatorProcess(Service):
    """``python -m bench.emulator`` on a free loopback port.

    Args:
        data_dir: the emulator's ``data_dir`` (its output files are held in memory: nothing
            is written there).
        running_seconds: how long each job runs (0: it completes when created).
        answer_delay: seconds each API request waits before it is answered (a far server's
            latency; ``EmulatorConfig.answer_delay``).
    """

    def __init__(
        self, data_dir: Path, running_seconds: float = 0.0, answer_delay: float = 0.0
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + API_PREFIX
        self._args = [
            sys.executable,
            "-m",
            "bench.emulator",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--running-seconds",
            str(running_seconds),
            "--answer-delay",
            str(answer_delay),
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Self:
        """Starts the emulator; returns once ``/_emulator/stats`` answers."""

        def answers() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/_emulator/stats", timeout=1):
                    return True
            except OSError:
                return False

        self._process = start_process(
            self._args,
            ready=answers,
            timeout=timeout,
            what="the emulator",
            interval=0.1,
            grace=10.0,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    @property
    def pid(self) -> int:
        """The emulator's process id (valid once started)."""
        assert self._process is not None
        return self._process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the emulator has used so far (0 once it is gone)."""
        return process_cpu_seconds(self.pid)

    def stop(self) -> None:
        """Stops the emulator; it is gone when this returns."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, grace=10.0)


def _available(module: str, fallback: str) -> str:
    """``module`` if it can be imported (uvicorn's faster implementations), else ``fallback``."""
    return module if importlib.util.find_spec(module) is not None else fallback


def main(argv: Sequence[str] | None = None) -> int:
    """Serves the zero-delay emulator (every phase at zero; ``--answer-delay`` holds each
    answer back) until terminated."""
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--running-seconds", type=float, default=0.0)
    parser.add_argument("--answer-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = ZERO_DELAYS.model_copy(
        update={
            "data_dir": args.data_dir,
            "running_seconds": args.running_seconds,
            "answer_delay": args.answer_delay,
        }
    )
    app = create_lean_emulator_app(config)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        # Nothing per request that the bridge does not need: no proxy-header rewriting (the
        # client is local), no Server and Date headers.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        http=_available("httptools", "h11"),
        loop=_available("uvloop", "asyncio"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
