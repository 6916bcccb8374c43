"""The one server lifecycle: start a thing (a process or a thread server), poll until it is
ready, stop it; and the context-manager protocol that goes with it.

- ``Service``: ``with X(...) as x`` calls ``start()`` (which returns the started object) and
  ``stop()`` on the way out; ``Closing`` does the same for objects that only ``close()``.
- ``start_process``: a child in its own process group, returned once ``ready()`` holds; if it
  exits or is not ready in time, it is stopped and one error says so.
- ``stop_process_group``: SIGTERM to the group, SIGKILL after a grace period.

Used by Anvil (``bridge.devchain``), the CE emulator (``bridge.remote.server``), the API and
emulator threads (``bridge.http_thread``), ``LocalStack`` and the benchmarks' processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from bridge.waiting import wait_until


class Service:
    """A context manager over ``start()`` / ``stop()``. ``start`` returns ``self`` by default
    (for objects started by their constructor); ``stop`` must be safe to call twice."""

    def start(self) -> Self:
        """Starts it (a no-op here); returns it."""
        return self

    def stop(self) -> None:
        """Stops it; safe to call twice."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Closing(Service):
    """A ``Service`` whose ``stop`` is ``close()``: ``with X(...) as x`` closes it on the way
    out (for clients that hold connections rather than run)."""

    def close(self) -> None:
        """Releases what it holds; safe to call twice."""
        raise NotImplementedError

    def stop(self) -> None:
        """Same as ``close``."""
        self.close()


def stop_process_group(process: subprocess.Popen[Any], grace: float) -> None:
    """Stops ``process`` (started with ``start_new_session=True``) and its whole process group:
    SIGTERM, then SIGKILL after ``grace`` seconds. It is gone when this returns."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def start_process(
    args: Sequence[str],
    *,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    exited: Callable[[subprocess.Popen[bytes]], str] | None = None,
    grace: float = 5.0,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Starts ``args`` in its own process group and returns it once ``ready()`` holds.

    Args:
        ready: the readiness probe (e.g. the RPC answers); called every ``interval`` s.
        timeout: seconds before giving up.
        what: names the process in errors.
        exited: the message when the process exits during start-up (given the process);
            default: its exit status.
        grace: seconds between SIGTERM and SIGKILL when it must be stopped.
        popen: passed to ``subprocess.Popen`` (stdout, stderr, env, ...).

    Raises:
        RuntimeError: it exited, or was not ready within ``timeout`` (then it is stopped).
    """
    process: subprocess.Popen[bytes] = subprocess.Popen(list(args), start_new_session=True, **popen)

    def probe() -> bool:
        if process.poll() is not None:
            message = exited(process) if exited else f"exited with {process.returncode}"
            raise RuntimeError(f"{what} {message}")
        return ready()

    try:
        wait_until(probe, timeout, interval, f"{what} to be ready", error=RuntimeError)
    except BaseException:
        stop_process_group(process, grace)
        raise
    return process


#: glibc's ``mallopt`` parameter for the number of malloc arenas.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Caps glibc's malloc arenas at ``arenas`` for this process; call it before threads start.

    glibc gives threads that allocate at once arenas of their own (up to 8 per core), each
    keeping freed memory: a process of many short-lived allocations in many threads (the CE
    worker's) holds megabytes more than it uses. ``MALLOC_ARENA_MAX`` in the environment wins.
    Returns whether the cap was set (False off glibc, or when the environment sets it).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
