"""``ce-bridge run`` as a child process of a benchmark, configured by ``BRIDGE_*`` variables.

``BridgeProcess`` starts the real command line (as an operator deploys it), waits until it logs
that it runs, reads its memory high-water mark (``VmHWM`` in ``/proc/<pid>/status``) and always
stops it: SIGTERM, then SIGKILL to its process group after a grace period.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Self

from bridge.config import Settings
from bridge.lifecycle import Service, start_process, stop_process_group


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``BRIDGE_*`` variables that reproduce ``settings`` (secrets included: a child's env)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"BRIDGE_{name.upper()}"] = str(value)
    return env


def read_status_kb(pid: int, field: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) of ``/proc/<pid>/status``; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class BridgeProcess(Service):
    """``ce-bridge run`` in its own process group, logging to ``log_path``.

    Args:
        settings: the bridge's settings, passed as ``BRIDGE_*`` environment variables.
        log_path: where its stdout and stderr go.
        extra_env: more variables (e.g. ``PYTHONMALLOC``), for experiments.
    """

    def __init__(
        self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self._env = {**os.environ, **settings_env(settings), **(extra_env or {})}
        self._env.pop("BRIDGE_CONFIG", None)
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The child's process id (valid once started)."""
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> Self:
        """Starts the bridge; returns once it has logged that it runs.

        Raises:
            RuntimeError: it exited or did not say it runs within ``timeout`` seconds.
        """
        script = Path(sys.executable).parent / "ce-bridge"
        command = [str(script), "run"] if script.exists() else [sys.executable, "-m", "bridge.cli"]
        self._log = self.log_path.open("wb")

        def exited(_: subprocess.Popen[bytes]) -> str:
            return "exited at start:\n" + self.log_path.read_text(errors="replace")[-2000:]

        try:
            self.process = start_process(
                command,
                ready=lambda: b"bridge running" in self.log_path.read_bytes(),
                timeout=timeout,
                what="ce-bridge run",
                interval=0.1,
                exited=exited,
                grace=15.0,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def peak_rss_mb(self) -> float | None:
        """The process's peak resident set size so far (VmHWM), in MiB."""
        kb = read_status_kb(self.pid, "VmHWM")
        return None if kb is None else kb / 1024

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (all its threads)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 15.0) -> None:
        """Stops the bridge (SIGTERM, then SIGKILL); it is gone when this returns."""
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, grace)
        if self._log is not None:
            self._log.close()
            self._log = None
