"""The log reader's pure parts: the adaptive block range and the classification of errors."""

from __future__ import annotations

import pytest

from bridge.chain.reader import RangeSizer, is_range_error
from bridge.errors import RpcUnavailable


def test_range_starts_at_the_maximum_and_halves_down_to_one_block() -> None:
    sizer = RangeSizer(max_range=1000)
    assert sizer.size == 1000
    sizes = []
    while sizer.shrink():
        sizes.append(sizer.size)
    assert sizes == [500, 250, 125, 62, 31, 15, 7, 3, 1]
    assert sizer.size == 1
    assert not sizer.shrink(), "one block cannot shrink: the error is not about the range"


def test_range_grows_back_when_quiet_and_not_when_busy() -> None:
    sizer = RangeSizer(max_range=1000, size=10, quiet_logs=100)
    sizer.record(5)
    assert sizer.size == 20
    sizer.record(500)
    assert sizer.size == 20, "a busy range keeps its size"
    for _ in range(10):
        sizer.record(0)
    assert sizer.size == 1000, "never past the maximum"


def test_range_shrinks_after_a_dense_range() -> None:
    sizer = RangeSizer(max_range=1000, size=400, quiet_logs=100, busy_logs=2000)
    sizer.record(2001)
    assert sizer.size == 200, "more logs than busy_logs: half the blocks next time"
    sizer.record(2000)
    assert sizer.size == 200, "between quiet and busy: unchanged"
    for _ in range(20):
        sizer.record(50_000)
    assert sizer.size == 1, "never below one block"


@pytest.mark.parametrize(
    "message",
    [
        "query returned more than 10000 results",
        "Log response size exceeded",
        "eth_getLogs block range too large",
        "Read timed out. (read timeout=10)",
        "limit exceeded",
    ],
)
def test_errors_that_ask_for_a_smaller_range(message: str) -> None:
    assert is_range_error(RpcUnavailable(message))


@pytest.mark.parametrize("message", ["connection refused", "invalid params", "internal error"])
def test_other_errors_are_not_range_errors(message: str) -> None:
    assert not is_range_error(RpcUnavailable(message))
