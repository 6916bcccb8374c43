"""The one wait-for helper: poll a condition until it holds, bounded by a timeout.

Used wherever something must become true (a server answering, a process ready, a job
settled: ``bridge.lifecycle``, ``bridge.devchain``, ``bridge.demo``, the tests' and the
benchmarks' waits). Never a fixed sleep where a condition can be polled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    what: str = "the condition",
    *,
    between: Callable[[], object] | None = None,
    error: Callable[[str], Exception] = TimeoutError,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Calls ``condition`` every ``interval`` seconds until it returns a truthy value, and
    returns that value. It is always called at least once, and once more at the deadline.

    Args:
        condition: the check; an exception it raises ends the wait (e.g. "the process exited").
        timeout: seconds before giving up.
        interval: seconds between two checks.
        what: names the condition in the timeout's message.
        between: called between two checks (e.g. to mine a block).
        error: the exception class (or factory) raised on timeout, given the message.
        clock, sleep: injectable for tests.

    Raises:
        the ``error`` (by default ``TimeoutError``) naming ``what``, when it did not hold.
    """
    deadline = clock() + timeout
    while True:
        value = condition()
        if value:
            return value
        if clock() > deadline:
            raise error(f"timed out after {timeout:g}s waiting for {what}")
        if between is not None:
            between()
        sleep(interval)
