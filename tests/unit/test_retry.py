"""The one backoff policy: growth, cap, floor, reset and jitter."""

from __future__ import annotations

import pytest

from bridge.retry import Backoff


def test_delay_from_an_attempt_count() -> None:
    b = Backoff(initial=0.5, cap=60.0)
    assert [b.delay(a) for a in (0, 1, 2, 7, 8, 10_000)] == [0.5, 1.0, 2.0, 60.0, 60.0, 60.0]


def test_failed_grows_to_the_cap_with_floors_and_resets() -> None:
    b = Backoff(initial=0.25, cap=30.0)
    assert b.failed() == 0.5
    assert b.failed(floor=1.0) == 1.0
    assert b.failed(floor=5.0, cap=60.0) == 5.0
    for _ in range(10):
        b.failed()
    assert b.current == 30.0
    assert b.failed(cap=60.0) == 60.0
    b.reset()
    assert b.current == 0.25


def test_jitter_stays_within_its_fraction() -> None:
    draws = iter([0.0, 1.0, 0.5])
    b = Backoff(initial=1.0, cap=10.0, jitter=1.0, rng=lambda: next(draws))
    assert b.delay(2) == 0.0
    assert b.delay(2) == 4.0
    assert b.delay(2) == 2.0
    half = Backoff(initial=1.0, cap=10.0, jitter=0.5, rng=lambda: 0.0)
    assert half.delay(2) == 2.0


@pytest.mark.parametrize(
    "kwargs", [{"initial": -1.0, "cap": 1.0}, {"initial": 1.0, "cap": 1.0, "jitter": 2.0}]
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
